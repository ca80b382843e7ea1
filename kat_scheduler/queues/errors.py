from urllib.parse import urlsplit, urlunsplit

import redis


class InvalidItem(ValueError):
    """A queue item failed validation; `field` and `reason` say where and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid item: {field}: {reason}")
        self.field = field
        self.reason = reason


def redacted_url(url: str) -> str:
    """The URL without its password, for log lines and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def describe_client(client: redis.Redis) -> str:
    kwargs = client.get_connection_kwargs()
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class QueueUnavailable(ConnectionError):
    """Redis did not answer; the message names where kat_scheduler looked for it."""

    def __init__(self, client: redis.Redis, cause: Exception) -> None:
        super().__init__(f"Redis at {describe_client(client)} is unreachable: {cause}")
