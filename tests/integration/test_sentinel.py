"""kat_scheduler through Sentinel: a `redis+sentinel://` URL finds the master and the queue works on it."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.store import StoreUnavailable, describe_client
from tests.factories.redis_cluster import SENTINEL_SERVICE
from tests.factories.redis_fixtures import delete_prefixed
from tests.factories.tasks import boefje_task


def test_a_sentinel_url_gives_a_client_of_the_master(redis_sentinel_url: str, key_prefix: str) -> None:
    client = connect(redis_sentinel_url)
    try:
        assert isinstance(client.connection_pool, SentinelConnectionPool)
        assert describe_client(client) == redis_sentinel_url.removesuffix("/0")
        assert client.info("replication")["role"] == "master"
        queue = PriorityQueue(client, "boefje", prefix=key_prefix)
        task = boefje_task()
        assert queue.push(task, 1).accepted
        [claimed] = queue.claim()
        assert claimed.id == task.id and queue.ack(claimed.id) == "ok"
    finally:
        delete_prefixed(client, key_prefix)
        client.close()


def test_an_unknown_service_is_named_in_the_error(redis_sentinel_url: str, key_prefix: str) -> None:
    client = connect(redis_sentinel_url.replace(SENTINEL_SERVICE, "no-such-service"), retries=0, timeout=0.5)
    queue = PriorityQueue(client, "boefje", prefix=key_prefix)
    try:
        with pytest.raises(StoreUnavailable, match=r"redis\+sentinel://127\.0\.0\.1:\d+/no-such-service is "):
            queue.push(boefje_task(), 1)
    finally:
        client.close()
