"""Redis clients for the queues: decoded replies, timeouts, and retries with backoff.

`connect(url)` reads three URL forms (docs/queue.md, "Redis Cluster and Sentinel"):

- `redis://`, `rediss://`, `unix://`: one Redis server (redis-py's own URL form);
- `redis+cluster://[[user]:password@]host:port[,host:port...][/0]` (`rediss+cluster://` for TLS): a
  Redis Cluster, discovered from any of the listed nodes;
- `redis+sentinel://[[user]:password@]host:port[,host:port...]/<service>[/<db>][?sentinel_password=...]`:
  the master Sentinel names for `<service>`, found again after a failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from kat_scheduler.queues.errors import redacted_url

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
SENTINEL_SCHEME = "redis+sentinel"


def connect(url: str, *, retries: int = 5, timeout: float = 5.0) -> redis.Redis:
    """A client for `url` that retries connection errors and time-outs with exponential backoff
    (50 ms doubling up to 2 s) before the caller sees StoreUnavailable.

    A cluster URL gives a `redis.cluster.RedisCluster`. It answers every command kat_scheduler uses,
    so it is typed as `redis.Redis` here and the rest of the code needs no union."""
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries)
    timeouts: dict[str, Any] = {"decode_responses": True, "socket_timeout": timeout,
                                "socket_connect_timeout": timeout}
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        return cast(redis.Redis, _cluster(url, CLUSTER_SCHEMES[scheme], retry, timeouts))
    options = {**timeouts, "health_check_interval": 30, "retry": retry,
               "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}
    if scheme == SENTINEL_SCHEME:
        return _sentinel_master(url, options)
    return redis.Redis.from_url(url, **options)


def _cluster(url: str, tls: bool, retry: Retry, options: dict[str, Any]) -> RedisCluster:
    """The cluster client; the cluster's slot map is read now, so an unreachable cluster raises
    redis.ConnectionError here (RedisCluster itself raises an exception outside redis.RedisError)."""
    parts = _split(url, default_port=6379)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"{redacted_url(url)}: a Redis Cluster has only database 0")
    try:
        # The retry object sets how often the cluster client retries a command (re-reading the slot
        # map in between); the nodes' own connections do not retry.
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in parts.nodes],
                            username=parts.username, password=parts.password, ssl=tls, retry=retry, **options)
    except RedisClusterException as error:
        raise redis.ConnectionError(f"Redis Cluster at {redacted_url(url)} is unreachable: {error}") from error


def _sentinel_master(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the master Sentinel names; each new connection asks the Sentinels again."""
    parts = _split(url, default_port=26379)
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ValueError(f"{redacted_url(url)}: name the Sentinel service, e.g. redis+sentinel://host:26379/mymaster")
    sentinel_password = parse_qs(parts.query).get("sentinel_password", [None])[0]
    sentinel_options = {"password": sentinel_password, "socket_timeout": options["socket_timeout"]}
    sentinels = Sentinel(parts.nodes, sentinel_kwargs=sentinel_options)
    master: redis.Redis = sentinels.master_for(service, db=int(db or 0), username=parts.username,
                                               password=parts.password, **options)
    return master


@dataclass(frozen=True, slots=True)
class _Parts:
    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    path: str
    query: str


def _split(url: str, default_port: int) -> _Parts:
    """A URL with several `host:port` in its network location (urllib reads only one)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = []
    for node in filter(None, hosts.split(",")):
        host, colon, port = node.rpartition(":")
        if not colon or "]" in port:  # no port given ("[::1]" has colons of its own)
            host, port = node, ""
        nodes.append((host.strip("[]"), int(port) if port else default_port))
    if not nodes:
        raise ValueError(f"{redacted_url(url)}: no host:port")
    return _Parts(nodes, unquote(username) or None, unquote(password) or None, parts.path, parts.query)
