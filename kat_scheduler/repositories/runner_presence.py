"""The runners the scheduler has seen lately: Celery runners by their heartbeats (a dispatcher hears
them), pull runners by their pops (the API sees them). Only for people: the dashboard shows them; no
decision reads them (the dispatchers keep their own, exact view of their runners).

One hash, "{<prefix>}:runners": runner name -> "<seen ms>:<how>:<active tasks>:<processed tasks>" (the
last two empty when unknown). Entries not refreshed for FORGET_AFTER_MS are dropped as they are read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import redis

from kat_scheduler.store import StoreClient, StoreUnavailable

FORGET_AFTER_MS = 10 * 60_000
CELERY = "celery"
PULL = "pull"


@dataclass(frozen=True, slots=True)
class RunnerSeen:
    name: str
    how: str  # CELERY (a worker's heartbeat) or PULL (a pop through the API)
    seen_ms: int
    active: int | None = None  # tasks it runs now, when its heartbeat says
    processed: int | None = None  # tasks it has finished since it started, when its heartbeat says

    def encode(self) -> str:
        return ":".join((str(self.seen_ms), self.how, _number(self.active), _number(self.processed)))

    @classmethod
    def decode(cls, name: str, stored: str) -> RunnerSeen:
        seen, how, active, processed = stored.split(":", 3)
        return cls(name, how, int(seen), int(active) if active else None, int(processed) if processed else None)


class RunnerPresence:
    def __init__(self, client: redis.Redis, prefix: str, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
                 ) -> None:
        self.client: Any = StoreClient(client, "runners")
        self.key = "{" + prefix + "}:runners"
        self.clock_ms = clock_ms

    def seen(self, name: str, how: str, active: int | None = None, processed: int | None = None) -> None:
        """`name` was seen now (a heartbeat, a pop). Only the display is lost when Redis is away: the work
        that saw the runner (a pop, a dispatcher's loop) goes on."""
        with suppress(StoreUnavailable):
            self.client.hset(self.key, name, RunnerSeen(name, how, self.clock_ms(), active, processed).encode())

    def recent(self) -> list[RunnerSeen]:
        """The runners seen in the last FORGET_AFTER_MS, most recently seen first; older ones are dropped."""
        now_ms = self.clock_ms()
        runners = [RunnerSeen.decode(name, stored) for name, stored in self.client.hgetall(self.key).items()]
        forgotten = [runner.name for runner in runners if now_ms - runner.seen_ms > FORGET_AFTER_MS]
        if forgotten:
            self.client.hdel(self.key, *forgotten)
        return sorted((r for r in runners if r.name not in forgotten), key=lambda r: (-r.seen_ms, r.name))


def _number(value: int | None) -> str:
    return "" if value is None else str(value)
