"""Event-driven scheduling in `celery -A kat_scheduler worker`: a worker bootstep that runs a RabbitMQ
listener for each event queue a registered scheduler subscribes to (`Scheduler.subscriptions`), each
on a thread of its own.

Any number of scheduler workers can run these: RabbitMQ hands each message to one of them, and the
queue's one-active-task rule makes a message handled twice (after a reconnect) harmless. The handlers
sit out outages of Katalogus, Octopoes, Bytes or Redis (the message stays with RabbitMQ) rather than
dead-letter good events. `SCHEDULER_LISTENERS_ENABLED=false` leaves them out of a worker that should
only dispatch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from celery import bootsteps

from kat_scheduler.connectors.listeners.listener import Listener
from kat_scheduler.context import AppContext
from kat_scheduler.schedulers import SCHEDULERS, Subscription

logger = logging.getLogger(__name__)


def subscriptions(context: AppContext) -> list[Subscription]:
    """What every registered scheduler listens to, in the order of registration."""
    return [subscription for scheduler in SCHEDULERS.values() for subscription in scheduler(context).subscriptions()]


def start_listeners(context: AppContext, queue_names: Mapping[str, str] | None = None,
                    ) -> list[tuple[Listener[Any], threading.Thread]]:
    """A listener per subscription, running; `queue_names` renames OpenKAT's queues (tests, benchmarks)."""
    names = queue_names or {}
    running = []
    for subscription in subscriptions(context):
        options: dict[str, Any] = {"queue_name": names.get(subscription.queue, subscription.queue)}
        if subscription.handle_batch is not None:
            options["batch_handler"] = subscription.handle_batch
        listener = subscription.listener.from_settings(context.settings, subscription.handle, **options)
        thread = threading.Thread(target=listener.run, name=f"listener:{listener.queue_name}", daemon=True)
        thread.start()
        running.append((listener, thread))
    return running


class ListenersStep(bootsteps.StartStopStep):
    """Starts the listeners with the worker and stops them (finishing the message at hand) with it."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.context: AppContext | None = None
        self.running: list[tuple[Listener[Any], threading.Thread]] = []

    def start(self, parent: Any) -> None:
        self.context = AppContext.create()
        if not self.context.settings.listeners_enabled:
            logger.info("listeners are switched off in this worker (SCHEDULER_LISTENERS_ENABLED=false)")
            return
        self.running = start_listeners(self.context)
        logger.info("listening to %s", ", ".join(listener.queue_name for listener, _ in self.running))

    def stop(self, parent: Any) -> None:
        for listener, _ in self.running:
            listener.stop()
        for listener, thread in self.running:
            thread.join(timeout=listener.stop_timeout)
        self.running = []
        if self.context is not None:
            self.context.close()
            self.context = None
