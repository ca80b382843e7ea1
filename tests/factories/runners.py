"""Helpers for dispatch tests: waiting on a condition, reference runners as subprocesses, and a
dispatcher wired to a test's queues and Celery app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from kat_scheduler.config import load_settings
from kat_scheduler.dispatcher import Dispatcher, DispatchOptions, routes_from
from kat_scheduler.kinds import KINDS
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.runner.handlers import read_starts, starts_key
from tests.factories.tasks import make_queue
from tests.factories.waiting import wait_for

CELERY = str(Path(sys.executable).parent / "celery")
ROOT = Path(__file__).resolve().parents[2]


class Lane:
    """One test's names: key prefix, Celery queues, the runner's start list."""

    def __init__(self, client: redis.Redis, prefix: str, lease_seconds: float = 30.0, max_attempts: int = 3,
                 boefje_slots: int = 1, normalizer_slots: int = 1) -> None:
        self.client = client
        self.prefix = prefix
        self.boefje_queue = f"{prefix}-boefjes"
        self.normalizer_queue = f"{prefix}-normalizers"
        self.report_queue = f"{prefix}-reports"
        self.settings = load_settings(key_prefix=prefix, lease_seconds=lease_seconds, hand_offs={
            "boefje": {"celery_queue": self.boefje_queue, "slots": boefje_slots},
            "normalizer": {"celery_queue": self.normalizer_queue, "slots": normalizer_slots},
            "report": {"celery_queue": self.report_queue, "slots": 1}})
        self.queues: dict[str, PriorityQueue] = {
            kind: make_queue(client, prefix, kind, lease_seconds=lease_seconds, max_attempts=max_attempts)
            for kind in KINDS
        }
        self.starts_key = starts_key(prefix)

    @property
    def boefjes(self) -> PriorityQueue:
        return self.queues["boefje"]

    def starts(self) -> list[dict[str, Any]]:
        return [line for line in read_starts(self.client, self.starts_key) if line["event"] == "start"]

    def lines(self) -> list[dict[str, Any]]:
        return read_starts(self.client, self.starts_key)

    def ended(self) -> int:
        return sum(1 for line in self.lines() if line["event"] == "end")

    def status(self, task_id: str) -> str | None:
        record = self.boefjes.records.get(task_id)
        return str(record.status) if record else None

    def dispatcher(self, app: Celery, **options: Any) -> Dispatcher:
        options.setdefault("inspect_timeout", 0.5)
        return Dispatcher(app, self.client, self.queues, routes_from(self.settings), DispatchOptions(**options))

    def dispatch_all(self, app: Celery, dispatchers: int, tasks: int, timeout: float) -> list[Dispatcher]:
        """Run `dispatchers` dispatchers side by side until `tasks` tasks have ended; the stopped dispatchers."""
        running = [self.dispatcher(app) for _ in range(dispatchers)]
        for dispatcher in running:
            dispatcher.start()
        try:
            wait_for(lambda: self.ended() == tasks, timeout, "all tasks to run")
        finally:
            for dispatcher in running:
                dispatcher.stop()
        return running


@contextmanager
def running(dispatcher: Dispatcher) -> Iterator[Dispatcher]:
    dispatcher.start()
    try:
        wait_for(dispatcher.events_ready.is_set, 10, "the dispatcher's event receiver")
        yield dispatcher
    finally:
        dispatcher.stop()


class RunnerProcess:
    """`celery -A kat_scheduler.runner worker` with the record_starts handler, as a subprocess."""

    def __init__(self, lane: Lane, broker_url: str, redis_url: str, *, pool: str = "solo", concurrency: int = 1,
                 hold_seconds: float = 0.0, handler: str = "kat_scheduler.runner.handlers:record_starts",
                 hostname: str | None = None, log_level: str = "WARNING", env: dict[str, str] | None = None) -> None:
        self.hostname = hostname or f"runner-{uuid.uuid4().hex[:8]}@localhost"
        env = dict(os.environ, **(env or {}), CELERY_BROKER_URL=broker_url, SCHEDULER_REDIS_URL=redis_url,
                   SCHEDULER_KEY_PREFIX=lane.prefix, SCHEDULER_RUNNER_HANDLER=handler,
                   SCHEDULER_RUNNER_HOLD_SECONDS=str(hold_seconds),
                   SCHEDULER_BOEFJE_CELERY_QUEUE=lane.boefje_queue,
                   SCHEDULER_NORMALIZER_CELERY_QUEUE=lane.normalizer_queue,
                   SCHEDULER_REPORT_CELERY_QUEUE=lane.report_queue, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [CELERY, "-A", "kat_scheduler.runner", "worker", "-Q",
             f"{lane.boefje_queue},{lane.normalizer_queue},{lane.report_queue}",
             "-E", "-P", pool, "-c", str(concurrency), "-n", self.hostname, "--loglevel", log_level,
             "--without-gossip", "--without-mingle"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )

    def wait_ready(self, app: Celery, timeout: float = 20.0) -> RunnerProcess:
        def answered() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"runner exited: {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            return bool(app.control.ping(destination=[self.hostname], timeout=0.3))
        wait_for(answered, timeout, f"runner {self.hostname}")
        return self

    def kill(self) -> None:
        """SIGKILL the runner's whole process group (its pool children too)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
