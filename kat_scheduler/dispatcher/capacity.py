"""How many runner slots a Celery queue has: the pool sizes of the workers that consume it.

Celery's remote control answers this: `inspect().active_queues()` says which queues each worker
consumes, `inspect().stats()` gives its pool's `max-concurrency`. A worker that consumes several of
our queues counts fully for each (the kinds do not share slots; see docs/dispatch.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

logger = logging.getLogger(__name__)


class RunnerCapacity:
    """Discovers the runners; `slots(queue)` answers from the last discovery (0 before the first)."""

    def __init__(self, app: Celery, queues: Iterable[str], timeout: float = 1.0) -> None:
        self.app = app
        self.queues = set(queues)
        self.timeout = timeout
        self.runners: dict[str, int] = {}  # hostname -> pool size, of workers consuming our queues
        self._slots: dict[str, int] = {}

    def slots(self, queue: str) -> int:
        return self._slots.get(queue, 0)

    def discover(self) -> dict[str, int]:
        """Ask every worker; answers (and keeps) the slots per queue. A failed broadcast keeps the last."""
        inspect = self.app.control.inspect(timeout=self.timeout)
        try:
            active_queues: dict[str, list[dict[str, Any]]] = inspect.active_queues() or {}
            consuming = {host: {queue["name"] for queue in queues} & self.queues
                         for host, queues in active_queues.items()}
            consuming = {host: queues for host, queues in consuming.items() if queues}
            stats: dict[str, dict[str, Any]] = (
                self.app.control.inspect(timeout=self.timeout, destination=sorted(consuming)).stats() or {}
                if consuming else {}
            )
        except Exception as error:  # the broker is away: keep what we knew
            logger.warning("runner discovery failed (%r); keeping %s", error, self._slots)
            return dict(self._slots)
        runners: dict[str, int] = {}
        slots = dict.fromkeys(self.queues, 0)
        for host, queues in consuming.items():
            size = _pool_size(stats.get(host))
            if size is None:
                continue  # it did not answer the second question in time; next discovery
            runners[host] = size
            for queue in queues:
                slots[queue] += size
        if slots != self._slots:
            logger.info("runner slots now %s (runners %s)", slots, runners)
        self.runners, self._slots = runners, slots
        return dict(slots)

    def holders(self) -> Holdings:
        """The tasks the runners hold now (started or prefetched), and which runners answered."""
        inspect = self.app.control.inspect(timeout=self.timeout, destination=sorted(self.runners) or None)
        holdings = Holdings()
        try:
            listings = [inspect.active(), inspect.reserved()]
        except Exception as error:
            logger.warning("listing the runners' tasks failed (%r)", error)
            return holdings
        # A runner counts as having answered only when it answered both questions.
        answered = set.intersection(*(set(listing or {}) for listing in listings))
        for listing in listings:
            for host, tasks in (listing or {}).items():
                if host in answered:
                    holdings.tasks.update((task["id"], host) for task in tasks if "id" in task)
        holdings.answered = answered
        return holdings


@dataclass(slots=True)
class Holdings:
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> hostname of the runner holding it
    answered: set[str] = field(default_factory=set)  # the runners that answered


def _pool_size(stats: dict[str, Any] | None) -> int | None:
    try:
        return int(stats["pool"]["max-concurrency"]) if stats else None
    except (KeyError, TypeError, ValueError):
        return None
