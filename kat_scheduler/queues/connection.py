"""Redis clients for the queues: decoded replies, timeouts, and retries with backoff."""

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def connect(url: str, *, retries: int = 5, timeout: float = 5.0) -> redis.Redis:
    """A client for `url` that retries connection errors and time-outs with exponential backoff
    (50 ms doubling up to 2 s) before the caller sees QueueUnavailable."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
