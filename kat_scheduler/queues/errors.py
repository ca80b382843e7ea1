"""The queues' own errors, and URLs fit to show."""

from urllib.parse import urlsplit, urlunsplit


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
