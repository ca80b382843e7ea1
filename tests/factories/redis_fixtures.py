"""Redis for tests: `fake_redis` (fakeredis, the unit lane) and `real_redis` (the integration lane).

Each test gets a key prefix of its own, and its keys are deleted afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from kat_scheduler.queues import PriorityQueue, connect
from tests.factories.tasks import FakeClock, make_queue

REDIS_URL = os.environ.get("KAT_TEST_REDIS_URL", "redis://localhost:6379/0")


@pytest.fixture
def key_prefix() -> str:
    return f"kat-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def delete_prefixed(client: redis.Redis, prefix: str) -> None:
    """Delete every key of a prefix. On a cluster client SCAN runs on every primary and DEL is split
    by slot (redis-py's RedisCluster does both), so this works there too."""
    for pattern in (f"{prefix}*", "{" + prefix + "*"):
        batch = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(batch), 1000):
            client.delete(*batch[start:start + 1000])


@pytest.fixture
def real_redis(key_prefix: str) -> Iterator[redis.Redis]:
    client = connect(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"the integration lane needs Redis at {REDIS_URL}: {error}")
    yield client
    delete_prefixed(client, key_prefix)
    client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(client: redis.Redis, key_prefix: str, clock: FakeClock) -> PriorityQueue:
    """A boefje queue on the lane's Redis (`client`), on a clock the test moves."""
    return make_queue(client, key_prefix, lease_seconds=60, max_attempts=3, clock_ms=clock)
