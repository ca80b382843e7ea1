"""The one way a store reaches Redis: a client whose every call turns Redis's connection errors into
StoreUnavailable, naming the store and the URL.

Each store (the queues, the task records, the schedules, the boefje catalogue, the leader lease, the
runners' once-marks) holds a StoreClient instead of a redis-py client, so no caller anywhere needs to
know redis-py's exceptions: the schedulers, the listeners, the dispatcher, the API (503) and the CLI
(exit 5) handle StoreUnavailable alone. Error replies (a wrong type, a script's error) are bugs, not
outages, and pass through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError
from redis.sentinel import SentinelConnectionPool

# Redis cannot answer now: no connection, no reply in time, or (on a cluster) a slot without a master.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError)


class StoreUnavailable(ConnectionError):
    """A store's Redis did not answer: the one exception every caller of every store handles.

    `store` names which store asked ("queue boefje", "records normalizer", "schedules boefje",
    "catalogue", "leader lease", ...), `url` where it looked (without a password)."""

    def __init__(self, store: str, url: str, cause: Exception) -> None:
        super().__init__(f"{store}: Redis at {url} is unreachable: {cause}")
        self.store = store
        self.url = url
        self.cause = cause


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


class StoreClient:
    """Looks like the redis-py client it wraps; `raw` is that client, for code that guards itself
    (see `guard`)."""

    def __init__(self, client: redis.Redis | StoreClient, store: str) -> None:
        self.raw: Any = client.raw if isinstance(client, StoreClient) else client
        self.store = store
        self.url = describe_client(self.raw)

    def unavailable(self, error: Exception) -> StoreUnavailable:
        return StoreUnavailable(self.store, self.url, error)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """For calls made on `raw` (or its connections) directly, as the Lua libraries' fast path does."""
        try:
            yield
        except UNAVAILABLE as error:
            raise self.unavailable(error) from error

    def pipeline(self, *args: Any, **kwargs: Any) -> GuardedPipeline:
        return GuardedPipeline(self, self.raw.pipeline(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.raw, name)
        if not callable(attribute):
            return attribute
        guarded = self._guarded(attribute)
        self.__dict__[name] = guarded  # looked up once per name
        return guarded

    def _guarded(self, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except UNAVAILABLE as error:
                raise self.unavailable(error) from error
        return guarded


class GuardedPipeline:
    """A pipeline whose `execute` raises StoreUnavailable; queued commands chain as on redis-py's."""

    def __init__(self, store: StoreClient, pipeline: Any) -> None:
        self._store = store
        self._pipeline = pipeline

    def execute(self, *args: Any, **kwargs: Any) -> list[Any]:
        with self._store.guard():
            result: list[Any] = self._pipeline.execute(*args, **kwargs)
            return result

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._pipeline, name)
        if not callable(attribute):
            return attribute

        def queued(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            return self if result is self._pipeline else result
        return queued

    def __enter__(self) -> GuardedPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pipeline.reset()
