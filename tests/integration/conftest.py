import pytest
import redis


@pytest.fixture
def client(real_redis: redis.Redis) -> redis.Redis:
    """The integration lane runs the same queue tests on the real Redis."""
    return real_redis
