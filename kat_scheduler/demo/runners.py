"""The demo's runners, and the log of which task each of them was handed and when.

- `PacedHandler`: the simulated work, taking as long as a boefje takes. Instant work would drain every
  queue at once; with work that takes a while, queues build up and ranking and turns show.
- `ServingLog`: every task handed to a runner, in the order it was handed out: the dispatcher's
  forwards (Celery's `after_task_publish` fires as each claimed task is sent, in claim order) and the
  pull runner's pops. It lives in Redis beside the queues; the demo's figures are read from it.
- `DoomedPullRunner`: a pull runner as OpenKAT's runners are (it pops over the HTTP API and says the task
  runs), which is killed before it reports back, so that its task's lease runs out.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import requests
from celery.signals import after_task_publish

from kat_scheduler.runner.worker import Handler

logger = logging.getLogger(__name__)

DISPATCHER = "dispatcher"


class PacedHandler:
    """Runs `work`, then waits out the rest of the time `seconds` gives the task's kind. Counts the tasks it
    runs, so that the demo can let the last ones end before it takes Redis away (`wait_idle`)."""

    def __init__(self, work: Handler, seconds: Mapping[str, float]) -> None:
        self.work = work
        self.seconds = dict(seconds)
        self._running = 0
        self._changed = threading.Condition()

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        with self._changed:
            self._running += 1
        try:
            started = time.monotonic()
            self.work(kind, payload)
            time.sleep(max(0.0, self.seconds.get(kind, 0.0) - (time.monotonic() - started)))
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no task runs, `timeout` seconds at most. A stopped Celery worker of the threads pool
        may still be running the tasks it had begun."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout)


@dataclass(frozen=True, slots=True)
class Served:
    """One task handed to a runner: by the dispatcher (to a Celery runner) or popped by a pull runner."""

    task_id: str
    kind: str
    at_ms: int
    by: str


class ServingLog:
    """A Redis list of Served, oldest first."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client: Any = client
        self.key = "{" + f"{prefix}:demo" + "}:served"

    def add(self, task_id: str, kind: str, by: str) -> None:
        line = {"id": task_id, "kind": kind, "at": int(time.time() * 1000), "by": by}
        self.client.rpush(self.key, json.dumps(line))

    def read(self, start: int = 0) -> list[Served]:
        """The entries from the `start`th on."""
        lines = [json.loads(line) for line in self.client.lrange(self.key, start, -1)]
        return [Served(line["id"], line["kind"], int(line["at"]), line["by"]) for line in lines]

    @contextmanager
    def hearing_forwards(self, celery_queues: Mapping[str, str]) -> Iterator[None]:
        """While the block runs, log each task sent to one of `celery_queues` (Celery queue -> kind)."""

        def forwarded(headers: Mapping[str, Any] | None = None, routing_key: str | None = None,
                      **_: Any) -> None:
            kind = celery_queues.get(routing_key or "")
            if kind is not None and headers:
                self.add(str(headers["id"]), kind, DISPATCHER)

        after_task_publish.connect(forwarded, weak=False)
        try:
            yield
        finally:
            after_task_publish.disconnect(forwarded)


@dataclass(frozen=True, slots=True)
class Popped:
    task_id: str
    organisation: str
    plugin_id: str
    ooi: str


class DoomedPullRunner:
    """Pops one task over the API, says it runs it, and is then killed: it never reports again."""

    name = "demo-pull-runner"

    def __init__(self, api_url: str, serving: ServingLog, token: str | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.serving = serving
        self.killed = False
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def pop_and_start(self, kind: str = "boefje") -> Popped | None:
        """POST /schedulers/{kind}/pop, then PATCH the task to running, as a pull runner does; None when
        the queue had nothing to give."""
        answer = self._session.post(f"{self.api_url}/schedulers/{kind}/pop", params={"limit": 1}, timeout=10)
        answer.raise_for_status()
        results = answer.json()["results"]
        if not results:
            return None
        task = results[0]
        self.serving.add(task["id"], kind, self.name)
        self._session.patch(f"{self.api_url}/tasks/{task['id']}", json={"status": "running"},
                            timeout=10).raise_for_status()
        data = task["data"]
        return Popped(task["id"], task["organisation"], data.get("boefje", {}).get("id", ""),
                      data.get("input_ooi") or "")

    def kill(self) -> None:
        """From now on it says nothing: no renewal, no result, as a runner whose process died."""
        self.killed = True
        self._session.close()
