import fakeredis
import pytest


@pytest.fixture
def client(fake_redis: fakeredis.FakeRedis) -> fakeredis.FakeRedis:
    """The unit lane runs the queue tests on fakeredis."""
    return fake_redis
