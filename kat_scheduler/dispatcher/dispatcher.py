"""The dispatcher: forwards the best queued tasks to Celery runners, never more than they can start.

Per kind, `PriorityQueue.dispatch` claims the highest-ranked tasks, but only as many as there are free
runner slots (counted in Redis, so several dispatchers share the slots), each under a lease; each task
is then sent with `send_task(name, args=(payload,), task_id=payload["id"], queue=...)`. Nothing waits
in a Celery broker queue behind lower-ranked work, because nothing is sent that a runner cannot start.

Four threads: the dispatch loop (sleeps until woken, see wakeup.py), the wake-up listener, the Celery
event receiver (lifecycle.py), and the upkeep loop (runner discovery, lease renewals, reaping).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.events.receiver import EventReceiver

from kat_scheduler.broker_reconnect import EVENTS_RECONNECT
from kat_scheduler.context import AppContext
from kat_scheduler.dispatcher.capacity import RunnerCapacity
from kat_scheduler.dispatcher.lifecycle import Lifecycle
from kat_scheduler.dispatcher.routes import Route, routes_from
from kat_scheduler.dispatcher.wakeup import Wakeup
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories.runner_presence import CELERY, RunnerPresence
from kat_scheduler.repositories.task_records import TaskRecord
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    batch: int = 100  # most tasks claimed in one script call
    fallback_seconds: float = 2.0  # the dispatch loop looks anyway this often without a wake-up
    reap_seconds: float = 15.0  # expired leases go back to the queue this often (the beat reaps too)
    renew_seconds: float | None = None  # renew live runners' leases this often; None = a third of the lease
    discover_seconds: float = 30.0  # ask Celery for the runners' pool sizes this often (slots = 0)
    reconcile_seconds: float = 10.0  # ask the runners which tasks they hold this often (Lifecycle.reconcile)
    lost_runner_grace: float = 30.0  # lease left to the tasks of a lost runner, see Lifecycle.runner_lost
    upkeep_tick: float = 1.0  # the upkeep loop's period
    inspect_timeout: float = 1.0  # how long a Celery remote-control question waits for answers


def _describe(record: TaskRecord) -> str:
    return f"task {record.id} ({record.kind}, organisation {record.organisation})"


def _fields(record: TaskRecord) -> dict[str, str]:
    """The task's fields for a log line about it (logging_setup.task_fields)."""
    return task_fields(record.id, record.kind, record.organisation)


class Dispatcher:
    def __init__(
        self,
        app: Celery,
        client: redis.Redis,
        queues: Mapping[str, PriorityQueue],
        routes: Sequence[Route],
        options: DispatchOptions | None = None,
        presence: RunnerPresence | None = None,
    ) -> None:
        self.app = app
        self.presence = presence
        self.queues = dict(queues)
        self.routes = [route for route in routes if route.kind in self.queues]
        self.options = options or DispatchOptions()
        lease = min(queue.lease_ms for queue in self.queues.values()) / 1000
        self.renew_seconds = self.options.renew_seconds or lease / 3
        self.capacity = RunnerCapacity(app, {route.celery_queue for route in self.routes},
                                       self.options.inspect_timeout)
        self.wakeup = Wakeup(client, [self.queues[route.kind].wake_channel for route in self.routes])
        self.lifecycle = Lifecycle(self.queues, self.routes, lost_runner_grace=self.options.lost_runner_grace,
                                   on_slot_freed=self.wakeup.set, on_runners_changed=self._rediscover_soon,
                                   on_heartbeat=self._show_runner)
        self.sent = 0
        self.events_ready = threading.Event()
        self._stopping = threading.Event()
        self._discover_now = threading.Event()
        self._receiver: EventReceiver | None = None
        self._threads = [
            threading.Thread(target=self._dispatch_loop, name="kat-dispatch", daemon=True),
            threading.Thread(target=self._receive_events, name="kat-dispatch-events", daemon=True),
            threading.Thread(target=self._upkeep_loop, name="kat-dispatch-upkeep", daemon=True),
        ]

    @classmethod
    def from_context(cls, app: Celery, context: AppContext, options: DispatchOptions | None = None) -> Dispatcher:
        return cls(app, context.redis, context.queues, routes_from(context.settings), options,
                   RunnerPresence(context.redis, context.settings.key_prefix, context.clock_ms))

    def _show_runner(self, hostname: str, active: int | None, processed: int | None) -> None:
        """A runner's heartbeat, kept for the dashboard."""
        if self.presence is not None:
            self.presence.seen(hostname, CELERY, active, processed)

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        self.wakeup.start()
        for thread in self._threads:
            thread.start()
        logger.info("dispatcher started: %s", ", ".join(
            f"{route.kind} -> {route.task_name} on {route.celery_queue} "
            f"({route.slots or 'discovered'} slots)" for route in self.routes))

    def stop(self) -> None:
        """Warm shutdown: what was claimed and not sent goes back to the queue (see _forward)."""
        self._stopping.set()
        self.wakeup.halt()
        self.wakeup.set()
        self._discover_now.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        for thread in self._threads:
            if thread.is_alive():
                thread.join(10)
        self.wakeup.stop()
        logger.info("dispatcher stopped after sending %d tasks", self.sent)

    def slots(self, route: Route) -> int:
        return route.slots if route.slots > 0 else self.capacity.slots(route.celery_queue)

    # -- the dispatch loop -------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        # Outcomes of tasks sent before the receiver listens would be heard by nobody.
        while not self.events_ready.wait(0.5):
            if self._stopping.is_set():
                return
        while not self._stopping.is_set():
            try:
                sent = self.forward_once()
            except StoreUnavailable as error:
                logger.warning("dispatch paused: %s", error)
                sent = 0
            if not sent:
                self.wakeup.wait(self._idle_seconds())

    def _idle_seconds(self) -> float:
        """How long to wait for a wake-up: the fallback, or less when a rate limit opens sooner (an open
        window publishes nothing)."""
        wait = self.options.fallback_seconds
        for queue in self.queues.values():
            if queue.limit_opens_at_ms is not None:
                wait = min(wait, max(0.0, (queue.limit_opens_at_ms - queue.clock_ms()) / 1000) + 0.001)
        return wait

    def forward_once(self) -> int:
        """Claim into the free slots of every route and send; answers how many tasks were sent."""
        self.lifecycle.replay()  # outcomes heard during a Redis outage free their slots first
        sent = 0
        for route in self.routes:
            if self._stopping.is_set():
                break
            slots = self.slots(route)
            claimed = self.queues[route.kind].dispatch(min(self.options.batch, slots), slots)
            sent += self._forward(route, claimed)
        return sent

    def _forward(self, route: Route, claimed: list[TaskRecord]) -> int:
        """Send each claimed task; a task's siblings (claimed with it, queue.md) go in its message, named
        under "siblings", and the queue moves them with it."""
        siblings: dict[str, list[TaskRecord]] = {}
        for record in claimed:
            if record.sibling_of is not None:
                siblings.setdefault(record.sibling_of, []).append(record)
        runs = [record for record in claimed if record.sibling_of is None]
        for number, record in enumerate(runs):
            if self._stopping.is_set():
                self._release(runs[number:], "the dispatcher is stopping")
                return number
            self.lifecycle.track(record)
            payload = record.data
            if record.id in siblings:
                payload = {**record.data, "siblings": [{"id": sibling.id, "organization": sibling.organisation}
                                                       for sibling in siblings[record.id]]}
            try:
                self.app.send_task(route.task_name, args=(payload,), task_id=record.id,
                                   queue=route.celery_queue)
            except Exception as error:  # the broker is away: hand back, try again later
                logger.error("sending %s to %s failed: %r", _describe(record), route.celery_queue, error,
                             extra=_fields(record))
                self._release(runs[number:], "it could not be sent")
                self._stopping.wait(self.options.fallback_seconds)
                return number
            self.sent += 1
            logger.debug("%s sent to %s (score %d, attempt %d)", _describe(record), route.celery_queue,
                         record.score, record.attempts, extra=_fields(record))
        return len(runs)

    def _release(self, records: list[TaskRecord], why: str) -> None:
        for record in records:
            outcome = self.queues[record.kind].release(record.id, record.attempts)
            self.lifecycle.forget(record.id)
            logger.info("%s handed back to the queue: %s (%s)", _describe(record), why, outcome,
                        extra=_fields(record))

    # -- Celery events -----------------------------------------------------------------------

    def _receive_events(self) -> None:
        ready = self.events_ready

        class Receiver(EventReceiver):
            def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, wakeup: bool = True,
                                 **kwargs: Any) -> None:
                super().on_consume_ready(connection, channel, consumers, wakeup=wakeup, **kwargs)
                ready.set()

            @contextmanager
            def establish_connection(self) -> Iterator[Any]:
                """kombu's, on the quicker schedule of EVENTS_RECONNECT."""
                with self.create_connection() as connection:
                    connection.ensure_connection(self.on_connection_error, self.connect_max_retries,
                                                 **EVENTS_RECONNECT)
                    yield connection

        while not self._stopping.is_set():
            try:
                with self.app.connection_for_read() as connection:
                    self._receiver = Receiver(connection, handlers={"*": self.lifecycle.on_event}, app=self.app)
                    if self._stopping.is_set():
                        return
                    self._receiver.run()  # reconnects by itself until should_stop
            except Exception as error:
                logger.warning("event receiver failed (%r); restarting", error)
                self._stopping.wait(1.0)

    # -- upkeep ------------------------------------------------------------------------------

    def _rediscover_soon(self) -> None:
        self._discover_now.set()

    def _upkeep_loop(self) -> None:
        discovering = any(route.slots == 0 for route in self.routes)
        if discovering:
            self._discover()
        self._reconcile()
        now = time.monotonic()
        due: dict[str, float] = {"discover": now + self.options.discover_seconds,
                                 "renew": now + self.renew_seconds, "reap": now + self.options.reap_seconds,
                                 "reconcile": now + self.options.reconcile_seconds}
        jobs: dict[str, tuple[float, Callable[[], None]]] = {
            "renew": (self.renew_seconds, self._renew),
            "reap": (self.options.reap_seconds, self.reap),
            "reconcile": (self.options.reconcile_seconds, self._reconcile),
        }
        if discovering:
            jobs["discover"] = (self.options.discover_seconds, self._discover)
        redis_was_away = False
        while not self._stopping.is_set():
            if self._discover_now.wait(self.options.upkeep_tick):
                self._discover_now.clear()
                if discovering and not self._stopping.is_set():
                    self._discover()
            try:
                self.lifecycle.replay()
                self.lifecycle.check_runners()
                if redis_was_away:  # the live runners' leases went unrenewed: renew them before any reap
                    self._renew()
                    redis_was_away = False
                now = time.monotonic()
                for name, (interval, job) in jobs.items():
                    if now >= due[name]:
                        due[name] = now + interval
                        job()
            except StoreUnavailable as error:
                logger.warning("upkeep skipped: %s", error)
                redis_was_away = True
            except Exception:
                logger.exception("upkeep failed")

    def _discover(self) -> None:
        before = {route.kind: self.slots(route) for route in self.routes}
        self.capacity.discover()
        if any(self.slots(route) > before[route.kind] for route in self.routes):
            self.wakeup.set()

    def _renew(self) -> None:
        self.lifecycle.renew_live()

    def _reconcile(self) -> None:
        holdings = self.capacity.holders()
        self.lifecycle.reconcile(holdings.tasks, holdings.answered)

    def reap(self) -> None:
        """Expired leases back to the queue (or the dead letters), so a worker-only deployment recovers."""
        self.lifecycle.replay()
        for kind, queue in self.queues.items():
            result = queue.reap()
            for record in queue.records.get_many(result.requeued):
                logger.warning("%s: lease expired (%d of %d), back in the queue", _describe(record),
                               record.expired_leases, queue.max_attempts, extra=_fields(record))
            for record in queue.records.get_many(result.dead_lettered):
                logger.error("%s: lease expired %d times, dead-lettered", _describe(record), record.expired_leases,
                             extra=_fields(record))
            if result.requeued or result.dead_lettered:
                logger.debug("reaped %s queue: %s", kind, result)
