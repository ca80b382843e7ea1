"""Dispatch: forwarding ranked tasks to Celery runners as runner slots free (docs/dispatch.md)."""

from kat_scheduler.dispatcher.bootstep import DispatchStep
from kat_scheduler.dispatcher.capacity import RunnerCapacity
from kat_scheduler.dispatcher.dispatcher import Dispatcher, DispatchOptions
from kat_scheduler.dispatcher.lifecycle import Lifecycle
from kat_scheduler.dispatcher.routes import Route, routes_from
from kat_scheduler.dispatcher.wakeup import Wakeup

__all__ = ["DispatchOptions", "DispatchStep", "Dispatcher", "Lifecycle", "Route", "RunnerCapacity", "Wakeup",
           "routes_from"]
