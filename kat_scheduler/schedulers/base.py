"""What a scheduler is: it turns events and time into ranked tasks on its kind's queue.

A registered scheduler says what drives it, and that is what runs it: its `subscriptions` (RabbitMQ
event queues, which the scheduler worker's listeners consume: listening.py), its `beat_steps` (steps
of the beat leader's pass: beat.py) and `runs_schedules` (the beat runs its due schedules, and the API
accepts schedules for it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from kat_scheduler.connectors.services import ServiceUnavailable
from kat_scheduler.context import AppContext
from kat_scheduler.kinds import KINDS
from kat_scheduler.rankers import Ranker
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_ERRORS = (ServiceUnavailable, StoreUnavailable)


@dataclass(frozen=True)
class Subscription:
    """An event queue that drives a scheduler: OpenKAT's queue name, the listener class that reads its
    messages, and the handlers (one message; a batch, when the listener batches)."""

    queue: str
    listener: type[Any]  # a connectors.listeners.openkat.OpenKATListener
    handle: Callable[[Any], object]
    handle_batch: Callable[[list[Any]], object] | None = None


@dataclass(frozen=True)
class BeatPass:
    """What a step of the beat's pass may use: its share of the tick, the batch size, and
    `keep_going`, which renews the leader's lease and says False once it is lost."""

    tick_seconds: float
    batch_size: int
    keep_going: Callable[[], bool]


BeatStep = tuple[str, Callable[[BeatPass], object]]


class Scheduler:
    """One kind of work. Subclasses add the event handlers and passes that create it."""

    kind: str
    ranker: Ranker
    queue_kind: ClassVar[str | None] = None  # the queue it feeds, when not the one named `kind`
    runs_schedules: ClassVar[bool] = False  # whether the beat runs this kind's due schedules

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.queue = context.queues[self.queue_kind or self.kind]
        self.settings = context.settings
        if not hasattr(self, "ranker"):  # the kind's own ranker, unless the class names another
            self.ranker = KINDS[self.queue.kind].ranking()

    def now_ms(self) -> int:
        return self.context.clock_ms()

    def subscriptions(self) -> list[Subscription]:
        """The event queues that drive this scheduler (none by default)."""
        return []

    def beat_steps(self) -> list[BeatStep]:
        """This scheduler's steps of the beat's pass: by default its due schedules, when it has any."""
        if not self.runs_schedules:
            return []
        return [(f"run due {self.kind} schedules", lambda beat: self.run_due_schedules(beat.batch_size))]

    def run_due_schedules(self, limit: int) -> int:
        """Queue the work of up to `limit` due schedules; returns how many were handled."""
        raise NotImplementedError(f"{type(self).__name__} runs schedules but has no run_due_schedules")


SCHEDULERS: dict[str, type[Scheduler]] = {}


def register(scheduler: type[Scheduler]) -> type[Scheduler]:
    """Make a scheduler available by its kind (a class decorator)."""
    SCHEDULERS[scheduler.kind] = scheduler
    return scheduler


def patiently(work: Callable[[], T], what: str, give_up_after: float = 120.0) -> T:
    """Run `work`, retrying while a service or Redis is unreachable, with backoff up to a deadline.

    An event handler uses this so that an outage holds its message (RabbitMQ keeps it) instead of
    burning through the listener's redeliveries and dead-lettering good events."""
    deadline = time.monotonic() + give_up_after
    delay = 0.5
    while True:
        try:
            return work()
        except TRANSIENT_ERRORS as error:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: %s; retrying in %.1f s", what, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
