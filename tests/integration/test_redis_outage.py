"""Redis stopped, not only restarted, for 20 s in the middle of a stream of mutation events, on a
redis-server of the test's own (append-only file, so a stop loses nothing): the events wait
unacknowledged in RabbitMQ, each is handled once Redis is back and none is dead-lettered; meanwhile the
API answers 503 with Retry-After and the CLI exits 5, both naming Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from kat_scheduler.config import load_settings
from kat_scheduler.connectors.listeners.openkat import RAW_FILE_RECEIVED, SCAN_PROFILE_MUTATIONS
from kat_scheduler.context import AppContext
from kat_scheduler.listening import start_listeners
from kat_scheduler.queues import connect
from kat_scheduler.simulation import SimulatedKAT
from tests.factories.api_server import api_server, free_port
from tests.factories.kat_world import mutation
from tests.factories.rabbitmq_fixtures import TestPublisher, delete_queues, unique_queue_name
from tests.factories.runners import ROOT
from tests.factories.waiting import wait_for

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 20.0
TASKS_PER_NEW_HOST = 3  # the test world's boefjes for a new hostname at level 1


class OwnRedis:
    """redis-server on a free port with its append-only file in `directory`; `stop` and `start` keep both."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (the process holds it)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""], stdout=log, stderr=log)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: self._answers(probe), 20, f"redis-server on port {self.port}")

    @staticmethod
    def _answers(probe: redis.Redis) -> bool:
        try:
            return bool(probe.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis writes its append-only file out and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mutations_queue(rabbitmq_url: str) -> Iterator[str]:
    name = unique_queue_name("kat-test-outage")
    yield name
    delete_queues(rabbitmq_url, name, f"{name}.dead", f"{name}-raw")


def cli(url: str, prefix: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCHEDULER_REDIS_URL": url, "SCHEDULER_KEY_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "kat_scheduler.cli", *argv], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def pop_none(base: str) -> httpx.Response:
    """A runner's pop for a plugin nobody has: it reaches Redis and takes nothing."""
    return httpx.post(f"{base}/schedulers/boefje/pop", timeout=30, json={"filters": [
        {"column": "data", "field": "boefje__id", "operator": "==", "value": "no-such-boefje"}]})


def test_a_redis_outage_holds_the_events_and_loses_none(
        own_redis: OwnRedis, kat: SimulatedKAT, key_prefix: str, mutations_queue: str,
        rabbit_publisher: TestPublisher, tmp_path: Path) -> None:
    settings = load_settings(katalogus_api=kat.katalogus_url, octopoes_api=kat.octopoes_url,
                             bytes_api=kat.bytes_url, key_prefix=key_prefix, katalogus_cache_ttl=0,
                             schedule_jitter_seconds=0)
    context = AppContext.create(settings, redis_client=connect(own_redis.url))
    rabbit_publisher.declare(mutations_queue)
    listeners = start_listeners(context, {SCAN_PROFILE_MUTATIONS: mutations_queue,
                                          RAW_FILE_RECEIVED: f"{mutations_queue}-raw"})
    [(listener, _), *_] = listeners
    hosts = iter(f"Hostname|internet|outage{n}.example" for n in range(10_000))
    published = 0

    def publish(count: int) -> None:
        nonlocal published
        for _ in range(count):
            rabbit_publisher.publish(mutations_queue, mutation("create", next(hosts), level=1).model_dump(mode="json"))
        published += count

    try:
        with api_server(own_redis.url, key_prefix, log=tmp_path / "api.log") as base:
            publish(100)
            wait_for(lambda: listener.handled == 100, 30, "the events before the outage")
            assert pop_none(base).json() == {"results": []}  # the API's own connection to Redis is open
            own_redis.stop()
            stopped = time.monotonic()
            refused = httpx.get(f"{base}/tasks", params={"scheduler_id": "boefje"}, timeout=30)
            refused_pop = pop_none(base)
            command = cli(own_redis.url, key_prefix, "status")
            pace = threading.Event()  # never set: its wait is the stream's pace
            while time.monotonic() - stopped < OUTAGE_SECONDS:  # the stream goes on through the outage
                publish(5)
                pace.wait(0.5)
            assert listener.handled == 100  # nothing was handled without Redis ...
            own_redis.start()
            wait_for(lambda: listener.handled == published, 120, "every event once Redis is back")
            assert httpx.get(f"{base}/schedulers/boefje", timeout=10).status_code == 200
            assert pop_none(base).json() == {"results": []}  # and connected again
    finally:
        for running, thread in listeners:
            running.stop()
            thread.join(timeout=30)
        context.close()
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    assert refused_pop.status_code == 503 and "Redis" in refused_pop.json()["detail"]
    assert "Redis" in refused.json()["detail"] and own_redis.url in refused.json()["detail"]
    assert command.returncode == 5 and f"Redis at {own_redis.url} is unreachable" in command.stderr
    assert listener.dead_lettered == 0 and rabbit_publisher.message_count(f"{mutations_queue}.dead") == 0
    assert rabbit_publisher.message_count(mutations_queue) == 0
    check = connect(own_redis.url)
    assert sum(int(n) for n in check.hvals("{" + f"{key_prefix}:boefje" + "}:counts")) == \
        TASKS_PER_NEW_HOST * published  # ... and every event became its tasks, none twice
