"""Event-driven scheduling in `celery -A kat_scheduler worker`: a worker bootstep that runs the two
RabbitMQ listeners, each on a thread of its own, wired to the schedulers.

Any number of scheduler workers can run these: RabbitMQ hands each message to one of them, and the
queue's one-active-task rule makes a message handled twice (after a reconnect) harmless.
`SCHEDULER_LISTENERS_ENABLED=false` leaves them out of a worker that should only dispatch.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from kat_scheduler.connectors.listeners import RawFileReceivedListener, ScanProfileMutationListener
from kat_scheduler.connectors.listeners.listener import Listener
from kat_scheduler.connectors.listeners.openkat import RAW_FILE_RECEIVED, SCAN_PROFILE_MUTATIONS
from kat_scheduler.context import AppContext
from kat_scheduler.models import RawFileReceived, ScanProfileMutation
from kat_scheduler.schedulers import BoefjeScheduler, NormalizerScheduler
from kat_scheduler.schedulers.base import patiently

logger = logging.getLogger(__name__)


class EventHandlers:
    """The listeners' handlers: schedule, and sit out outages of Katalogus, Octopoes, Bytes or Redis
    (the message stays with RabbitMQ) rather than dead-letter good events."""

    def __init__(self, context: AppContext) -> None:
        self.boefjes = BoefjeScheduler(context)
        self.normalizers = NormalizerScheduler(context)

    def on_mutation(self, event: ScanProfileMutation) -> None:
        patiently(lambda: self.boefjes.on_mutation(event),
                  f"organisation {event.client_id}: {event.operation} of {event.primary_key}")

    def on_mutations(self, events: list[ScanProfileMutation]) -> None:
        patiently(lambda: self.boefjes.on_mutations(events), f"a batch of {len(events)} scan profile mutations")

    def on_raw_file(self, event: RawFileReceived) -> None:
        patiently(lambda: self.normalizers.on_raw_file(event),
                  f"organisation {event.organization}: raw file {event.raw_data.id}")


def start_listeners(
    context: AppContext,
    mutation_queue: str = SCAN_PROFILE_MUTATIONS,
    raw_file_queue: str = RAW_FILE_RECEIVED,
) -> list[tuple[Listener[Any], threading.Thread]]:
    """Both listeners, running; the queue names are OpenKAT's unless a test or benchmark needs its own."""
    handlers = EventHandlers(context)
    listeners: list[Listener[Any]] = [
        ScanProfileMutationListener.from_settings(context.settings, handlers.on_mutation, queue_name=mutation_queue,
                                                  batch_handler=handlers.on_mutations),
        RawFileReceivedListener.from_settings(context.settings, handlers.on_raw_file, queue_name=raw_file_queue),
    ]
    running = []
    for listener in listeners:
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
