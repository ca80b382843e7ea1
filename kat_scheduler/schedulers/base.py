"""What a scheduler is: it turns events and time into ranked tasks on its kind's queue."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar, TypeVar

from kat_scheduler.connectors.services import ServiceUnavailable
from kat_scheduler.context import AppContext
from kat_scheduler.rankers import Ranker
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_ERRORS = (ServiceUnavailable, StoreUnavailable)


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

    def now_ms(self) -> int:
        return self.context.clock_ms()


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
