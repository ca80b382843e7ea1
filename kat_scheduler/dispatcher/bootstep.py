"""The dispatcher as a bootstep of `celery -A kat_scheduler worker`: it starts and stops with the worker."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from kat_scheduler.config import load_settings
from kat_scheduler.context import AppContext
from kat_scheduler.dispatcher.dispatcher import Dispatcher

logger = logging.getLogger(__name__)


class DispatchStep(bootsteps.StartStopStep):
    """Off when SCHEDULER_DISPATCHER_ENABLED is false (e.g. a worker that only listens for events)."""

    label = "kat dispatcher"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.dispatcher: Dispatcher | None = None
        self.context: AppContext | None = None

    def start(self, parent: Any) -> None:
        settings = load_settings()
        if not settings.dispatcher_enabled:
            logger.info("dispatcher disabled (SCHEDULER_DISPATCHER_ENABLED=false)")
            return
        self.context = AppContext.create(settings)
        self.dispatcher = Dispatcher.from_context(parent.app, self.context)
        self.dispatcher.start()

    def stop(self, parent: Any) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher = None
        if self.context is not None:
            self.context.close()
            self.context = None

    terminate = stop  # a cold shutdown hands back what it can too
