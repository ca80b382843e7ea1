from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError
from redis.sentinel import SentinelConnectionPool

# Redis cannot answer now: no connection, no reply in time, or (on a cluster) a slot without a master.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError)


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
    if isinstance(client, RedisCluster):
        return "redis+cluster://" + ",".join(sorted(client.nodes_manager.startup_nodes))
    pool: Any = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        sentinels = [sentinel.get_connection_kwargs() for sentinel in pool.sentinel_manager.sentinels]
        hosts = ",".join(f"{kwargs['host']}:{kwargs['port']}" for kwargs in sentinels)
        return f"redis+sentinel://{hosts}/{pool.service_name}"
    kwargs = client.get_connection_kwargs()
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class QueueUnavailable(ConnectionError):
    """Redis did not answer; the message names where kat_scheduler looked for it."""

    def __init__(self, client: redis.Redis, cause: Exception) -> None:
        super().__init__(f"Redis at {describe_client(client)} is unreachable: {cause}")
