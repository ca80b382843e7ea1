"""The beat on the real Redis: the unit lane's tests again, then two real `celery beat` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kat_scheduler.simulation import SimulatedKAT
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.waiting import wait_for
from tests.unit.test_beat import *  # noqa: F403  (the same tests, on the real Redis)

LEASE_SECONDS = 1.0


@pytest.fixture
def beat_processes(kat: SimulatedKAT, key_prefix: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "SCHEDULER_REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": REDIS_URL,
           "SCHEDULER_KEY_PREFIX": key_prefix, "SCHEDULER_BEAT_LEASE_SECONDS": str(LEASE_SECONDS),
           "SCHEDULER_BEAT_TICK_SECONDS": "0.1", "KATALOGUS_API": kat.katalogus_url,
           "OCTOPOES_API": kat.octopoes_url, "BYTES_API": kat.bytes_url}
    command = [sys.executable, "-m", "celery", "-A", "kat_scheduler", "beat", "--loglevel=INFO"]
    processes = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(2)]
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def leader_pid(client: redis.Redis, key_prefix: str) -> int | None:
    token = client.get("{" + f"{key_prefix}:beat" + "}:leader")
    return int(str(token).split(":")[1]) if token else None


def test_killing_the_leading_beat_process_makes_the_standby_lead(
    beat_processes: list[subprocess.Popen[bytes]], real_redis: redis.Redis, key_prefix: str
) -> None:
    pids = {p.pid for p in beat_processes}
    wait_for(lambda: leader_pid(real_redis, key_prefix) in pids, 30, "a beat to lead")
    leader = leader_pid(real_redis, key_prefix)
    assert leader is not None
    watch_until = time.monotonic() + 2 * LEASE_SECONDS  # both tick many times: the leader stays the same
    while time.monotonic() < watch_until:
        assert leader_pid(real_redis, key_prefix) == leader
        time.sleep(0.05)
    os.kill(leader, signal.SIGKILL)
    took = wait_for(lambda: leader_pid(real_redis, key_prefix) in pids - {leader}, 10, "the standby to lead")
    assert took < 2 * LEASE_SECONDS  # at most what was left of the lease, plus a tick
