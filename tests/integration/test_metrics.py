"""The Prometheus collector on a real Redis: the series after a known sequence of queue operations, a
scrape while Redis is away, our key names against Celery's queue names, and Flower serving the series."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from kat_scheduler.config import load_settings
from kat_scheduler.kinds import KINDS
from kat_scheduler.leadership import Leadership, beat_leader_key
from kat_scheduler.metrics import QueueCollector
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.queues.priority_queue import pushed_at_ms
from kat_scheduler.repositories import ScheduleRepository
from kat_scheduler.repositories.schedules import from_ms
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.tasks import FakeClock, boefje_task, make_queue, normalizer_task

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")
T0 = 1_800_000_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


class Sequence:
    """Five boefje tasks and one normalizer task pushed at T0; at T0+100 s one boefje task is claimed,
    at T0+200 s its lease (60 s, one attempt) is reaped to the dead letters and another is dispatched."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.clock = FakeClock(T0)
        self.boefjes = make_queue(client, prefix, "boefje", lease_seconds=60, max_attempts=1, clock_ms=self.clock)
        self.normalizers = make_queue(client, prefix, "normalizer", lease_seconds=60, max_attempts=1,
                                      clock_ms=self.clock)
        self.boefjes.push_many([(boefje_task(org), 10) for org in ("org-a", "org-a", "org-a", "org-b", "org-b")])
        self.normalizers.push(normalizer_task("org-c"), 10)
        self.clock.advance(100)
        [self.dead] = self.boefjes.claim(1)
        self.clock.advance(100)
        assert self.boefjes.reap().dead_lettered == [self.dead.id]
        [self.dispatched] = self.boefjes.dispatch(1, slots=4)
        self.schedules = {kind: ScheduleRepository(client, prefix, kind) for kind in ("boefje", "normalizer")}
        data = {"boefje": {"id": "dns"}, "organization": "org-a"}
        self.schedules["boefje"].new("org-a", {**data, "input_ooi": "Hostname|internet|a"}, "due",
                                     deadline_at=from_ms(T0))
        self.schedules["boefje"].new("org-a", {**data, "input_ooi": "Hostname|internet|b"}, "later",
                                     deadline_at=from_ms(T0 + 86_400_000))
        client.set(beat_leader_key(prefix), "host:1:token", px=10_000)

    def queues(self) -> dict[str, PriorityQueue]:
        return {"boefje": self.boefjes, "normalizer": self.normalizers}


@pytest.fixture
def sequence(real_redis: redis.Redis, key_prefix: str) -> Sequence:
    return Sequence(real_redis, key_prefix)


def test_the_series_after_a_known_sequence(sequence: Sequence, real_redis: redis.Redis, key_prefix: str) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(sequence.queues(), sequence.schedules,
                                     Leadership.of_beat(real_redis, key_prefix)))
    gone = {sequence.dead.organisation: 1}
    gone[sequence.dispatched.organisation] = gone.get(sequence.dispatched.organisation, 0) + 1
    for org, pushed in (("org-a", 3), ("org-b", 2)):
        expected = pushed - gone.get(org, 0)
        assert sample(registry, "kat_scheduler_queue_depth", kind="boefje", organisation=org) == (
            expected if expected else None)  # an organisation with nothing queued has no series
    assert sample(registry, "kat_scheduler_queue_depth", kind="normalizer", organisation="org-c") == 1
    assert sample(registry, "kat_scheduler_queue_in_flight", kind="boefje") == 1
    assert sample(registry, "kat_scheduler_queue_slots_in_use", kind="boefje") == 1
    assert sample(registry, "kat_scheduler_queue_slots_in_use", kind="normalizer") == 0
    assert sample(registry, "kat_scheduler_queue_dead_letters", kind="boefje") == 1
    assert sample(registry, "kat_scheduler_queue_dead_letters", kind="normalizer") == 0
    assert sample(registry, "kat_scheduler_queue_oldest_age_seconds", kind="boefje") == 200
    assert sample(registry, "kat_scheduler_queue_oldest_age_seconds", kind="normalizer") == 200
    assert sample(registry, "kat_scheduler_schedules_due", kind="boefje") == 1
    assert sample(registry, "kat_scheduler_schedules_due", kind="normalizer") == 0
    lease = sample(registry, "kat_scheduler_beat_leader_lease_seconds")
    assert lease is not None and 0 < lease <= 10
    assert sample(registry, "kat_scheduler_redis_up") == 1

    for event, count in (("claimed", 1), ("dead_lettered", 1), ("dispatched", 1), ("completed", None)):
        assert sample(registry, "kat_scheduler_queue_events_total", kind="boefje", event=event) == count

    sequence.boefjes.ack(sequence.dispatched.id)
    assert sample(registry, "kat_scheduler_queue_in_flight", kind="boefje") == 0
    assert sample(registry, "kat_scheduler_queue_slots_in_use", kind="boefje") == 0
    assert sample(registry, "kat_scheduler_queue_events_total", kind="boefje", event="completed") == 1


def test_the_oldest_age_follows_the_clock_and_empties_to_zero(sequence: Sequence) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(sequence.queues()))
    sequence.clock.advance(50)
    assert sample(registry, "kat_scheduler_queue_oldest_age_seconds", kind="boefje") == 250
    while sequence.boefjes.claim(10):
        pass
    assert sample(registry, "kat_scheduler_queue_oldest_age_seconds", kind="boefje") == 0
    assert sample(registry, "kat_scheduler_beat_leader_lease_seconds") is None  # not asked for


def test_a_scrape_while_redis_is_away_says_only_that(key_prefix: str) -> None:
    away = connect(f"redis://127.0.0.1:{free_port()}/0", retries=0, timeout=0.5)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector({"boefje": make_queue(away, key_prefix, "boefje")}))
    text = generate_latest(registry).decode()
    assert "kat_scheduler_redis_up 0.0" in text and "kat_scheduler_queue_depth" not in text


def test_our_keys_cannot_be_celery_queues_flower_measures(sequence: Sequence, real_redis: redis.Redis,
                                                          key_prefix: str) -> None:
    """Flower runs LLEN on each Celery queue name (and name + "\\x06\\x16" + priority). Every key we write
    starts with "{<prefix>:", a hash tag, which no Celery queue name of ours has."""
    keys = set(real_redis.scan_iter(match=f"*{key_prefix}*", count=1000))
    assert len(keys) > 10
    assert all(key.startswith("{" + key_prefix + ":") for key in keys), sorted(keys)
    settings = load_settings()
    celery_queues = {"celery", *(settings.hand_off(kind).celery_queue for kind in KINDS)}
    assert not any(key.split("\x06")[0] in celery_queues for key in keys)
    [head] = real_redis.zrange("{" + key_prefix + ":boefje}:q:org-b", 0, 0)
    assert pushed_at_ms(str(head)) == T0


# -- Flower -------------------------------------------------------------------------------------------


@pytest.fixture
def flower(key_prefix: str, real_redis: redis.Redis) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`celery -A kat_scheduler flower --conf=flowerconfig.py` on a free port, against the Redis broker."""
    port = free_port()
    environment = {**os.environ, "SCHEDULER_REDIS_URL": REDIS_URL, "SCHEDULER_KEY_PREFIX": key_prefix,
                   "CELERY_BROKER_URL": REDIS_URL}
    process = subprocess.Popen(
        [CELERY, "-A", "kat_scheduler", "flower", "--conf=flowerconfig.py", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        yield port, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""


def test_flower_serves_our_series(sequence: Sequence, flower: tuple[int, subprocess.Popen[str]]) -> None:
    port, process = flower
    expected = 'kat_scheduler_queue_depth{kind="normalizer",organisation="org-c"} 1.0'
    deadline = time.monotonic() + 20
    text = ""
    while expected not in text and time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            pytest.skip(f"Flower could not start here (exit {process.returncode}): {stderr[-500:]}")
        text = fetch(f"http://127.0.0.1:{port}/metrics")
        if expected not in text:
            time.sleep(0.1)
    assert expected in text, f"Flower's /metrics within 20 s:\n{text[-2000:]}"
    assert 'kat_scheduler_queue_dead_letters{kind="boefje"} 1.0' in text
    assert 'kat_scheduler_queue_oldest_age_seconds{kind="normalizer"}' in text
    assert "kat_scheduler_redis_up 1.0" in text
    assert "# TYPE flower_events_total counter" in text  # Flower's own series are still there
