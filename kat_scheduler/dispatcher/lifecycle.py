"""The life of a forwarded task, learnt from Celery's events, written to its priority queue.

| Celery event                     | the task                                                       |
|----------------------------------|----------------------------------------------------------------|
| task-sent                        | dispatched (the claim set that already; the event only names it)|
| task-received                    | dispatched; we now know which runner holds it                  |
| task-started                     | running (`mark_running`)                                       |
| task-succeeded                   | completed (`ack`: the slot frees, the last run is recorded)    |
| task-failed, task-revoked        | failed (`ack(failed=True)`)                                    |
| task-rejected, requeue=False     | failed                                                         |
| task-rejected, requeue=True      | back in the broker (a runner was lost): stays in its slot      |

Every dispatcher hears every event and applies it; the queue's operations check the task's status, so
the second application of one event changes nothing. A task whose outcome nobody hears (all
dispatchers down) is caught by its lease. While the runner holding a task sends heartbeats, its lease
is renewed; when the runner goes offline or its heartbeats stop, the lease is cut to a short grace
(see `runner_lost`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kat_scheduler.dispatcher.routes import Route
from kat_scheduler.queues import PriorityQueue, QueueUnavailable
from kat_scheduler.repositories.task_records import TaskRecord

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 2.0  # Celery's worker heartbeat interval, when an event does not say
HEARTBEAT_MISSES = 2.0  # a runner is lost after this many heartbeat intervals without one
FOREIGN_MEMORY = 10_000  # how many ids of other Celery tasks to remember as not ours


@dataclass(slots=True)
class Tracked:
    kind: str
    organisation: str | None = None  # None: not looked up yet
    runner: str | None = None  # the hostname of the runner that received it


class Lifecycle:
    """Applies task and worker events; renews the leases of tasks whose runner is alive."""

    def __init__(
        self,
        queues: Mapping[str, PriorityQueue],
        routes: Sequence[Route],
        *,
        lost_runner_grace: float = 30.0,
        on_slot_freed: Callable[[], None] = lambda: None,
        on_runners_changed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queues = dict(queues)
        self.kind_of_task_name = {route.task_name: route.kind for route in routes}
        self.lost_runner_grace = lost_runner_grace
        self.on_slot_freed = on_slot_freed
        self.on_runners_changed = on_runners_changed
        self.clock = clock
        self.tracked: dict[str, Tracked] = {}
        self.foreign: OrderedDict[str, None] = OrderedDict()  # recent task ids that are not ours
        self.runners: dict[str, float] = {}  # hostname -> when it is lost without a new heartbeat
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "task-sent": self._on_sent,
            "task-received": self._on_received,
            "task-started": self._on_started,
            "task-succeeded": lambda event: self._end(event, failed=False),
            "task-failed": lambda event: self._end(event, failed=True),
            "task-revoked": lambda event: self._end(event, failed=True),
            "task-rejected": self._on_rejected,
            "worker-online": self._on_heartbeat,
            "worker-heartbeat": self._on_heartbeat,
            "worker-offline": lambda event: self.runner_lost(event.get("hostname", ""), "it went offline"),
        }

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """The EventReceiver's handler: never raises, so one bad event cannot stop the receiver."""
        handler = self._handlers.get(event.get("type", ""))
        if handler is None:
            return
        try:
            handler(event)
        except QueueUnavailable as error:
            logger.warning("could not apply %s of task %s: %s; its lease will settle it",
                           event.get("type"), event.get("uuid"), error)
        except Exception:
            logger.exception("could not apply event %r", event)

    def track(self, record: TaskRecord) -> None:
        """A task this dispatcher is about to send."""
        with self._lock:
            self.tracked[record.id] = Tracked(record.kind, record.organisation)

    def _on_sent(self, event: dict[str, Any]) -> None:
        kind = self.kind_of_task_name.get(event.get("name", ""))
        if kind is not None:
            with self._lock:
                self.tracked.setdefault(event["uuid"], Tracked(kind))

    def _on_received(self, event: dict[str, Any]) -> None:
        tracked = self._find(event["uuid"], self.kind_of_task_name.get(event.get("name", "")))
        if tracked is not None:
            tracked.runner = event.get("hostname")

    def _on_started(self, event: dict[str, Any]) -> None:
        task_id = event["uuid"]
        tracked = self._find(task_id)
        if tracked is None:
            return
        tracked.runner = event.get("hostname")
        outcome = self.queues[tracked.kind].mark_running(task_id)
        if logger.isEnabledFor(logging.DEBUG):  # naming the organisation may cost a Redis read
            logger.debug("%s started on %s (%s)", self._about(task_id, tracked), tracked.runner, outcome)

    def _on_rejected(self, event: dict[str, Any]) -> None:
        if not event.get("requeue"):
            self._end(event, failed=True)
            return
        tracked = self._find(event["uuid"])
        if tracked is not None:  # the broker hands it to another runner; it keeps its slot and lease
            logger.info("%s went back to the broker from %s", self._about(event["uuid"], tracked),
                        tracked.runner)
            tracked.runner = None

    def _end(self, event: dict[str, Any], failed: bool) -> None:
        task_id = event["uuid"]
        tracked = self._find(task_id)
        if tracked is None:
            return
        outcome = self.queues[tracked.kind].ack(task_id, failed=failed)
        about = self._about(task_id, tracked)
        with self._lock:
            self.tracked.pop(task_id, None)
        if outcome != "ok":  # another dispatcher applied this event first, or the lease ran out
            logger.debug("%s: %s ignored (%s)", about, event["type"], outcome)
            return
        if failed:
            logger.warning("%s failed on %s: %s", about, event.get("hostname"),
                           event.get("exception") or event["type"])
        else:
            logger.info("%s completed on %s", about, event.get("hostname"))
        self.on_slot_freed()

    def _find(self, task_id: str, kind: str | None = None) -> Tracked | None:
        """Our bookkeeping of a task, or None when it is not one the dispatchers forwarded."""
        with self._lock:
            tracked = self.tracked.get(task_id)
        if tracked is not None or task_id in self.foreign:
            return tracked
        kinds = [kind] if kind else list(self.queues)
        for candidate in kinds:  # forwarded by a dispatcher that was not us, or before we started
            if self.queues[candidate].in_slot(task_id):
                with self._lock:
                    return self.tracked.setdefault(task_id, Tracked(candidate))
        self.foreign[task_id] = None  # other Celery tasks: look each up once, not on every event
        if len(self.foreign) > FOREIGN_MEMORY:
            self.foreign.popitem(last=False)
        return None

    def _about(self, task_id: str, tracked: Tracked) -> str:
        if tracked.organisation is None:
            record = self.queues[tracked.kind].records.get(task_id)
            tracked.organisation = record.organisation if record else "?"
        return f"task {task_id} ({tracked.kind}, organisation {tracked.organisation})"

    # -- runners -----------------------------------------------------------------------------

    def _on_heartbeat(self, event: dict[str, Any]) -> None:
        hostname = event.get("hostname", "")
        interval = float(event.get("freq") or DEFAULT_HEARTBEAT_SECONDS)
        with self._lock:
            new = hostname not in self.runners
            self.runners[hostname] = self.clock() + interval * HEARTBEAT_MISSES
        if new:
            logger.info("worker %s is up", hostname)
            self.on_runners_changed()

    def alive(self, hostname: str | None) -> bool:
        with self._lock:
            return hostname is not None and self.runners.get(hostname, 0.0) > self.clock()

    def check_runners(self) -> None:
        """Runners whose heartbeats stopped are lost."""
        now = self.clock()
        with self._lock:
            silent = [hostname for hostname, until in self.runners.items() if until <= now]
        for hostname in silent:
            self.runner_lost(hostname, "its heartbeats stopped")

    def runner_lost(self, hostname: str, why: str) -> None:
        """Cut the leases of the lost runner's tasks to `lost_runner_grace` seconds.

        Runners ack late and reject on worker loss, so a broker that redelivers unacknowledged
        messages (RabbitMQ does at once) hands the task to another runner, whose task-started event
        takes it over and renews it again. If no runner starts it within the grace, reap returns
        it to the queue, counting the attempt: a task that keeps killing its runners ends in the
        dead letters instead of going round for ever.
        """
        with self._lock:
            known = self.runners.pop(hostname, None) is not None
            held = [(task_id, tracked) for task_id, tracked in self.tracked.items() if tracked.runner == hostname]
            for _, tracked in held:
                tracked.runner = None
        if known:
            logger.warning("worker %s is lost: %s", hostname, why)
            self.on_runners_changed()
        for task_id, tracked in held:
            outcome = self.queues[tracked.kind].renew(task_id, lease_seconds=self.lost_runner_grace)
            logger.warning("%s was on lost runner %s; it returns to the queue in %.0f s unless a runner "
                           "starts it (%s)", self._about(task_id, tracked), hostname, self.lost_runner_grace,
                           outcome)

    def adopt(self, holders: Mapping[str, str]) -> None:
        """Runners' current tasks (from inspect), for a dispatcher that starts while tasks run."""
        for task_id, hostname in holders.items():
            tracked = self._find(task_id)
            if tracked is not None and tracked.runner is None:
                tracked.runner = hostname

    # -- leases ------------------------------------------------------------------------------

    def renew_live(self) -> int:
        """Renew the lease of every task held by a live runner; forget tasks that left their slot."""
        in_slots = {kind: queue.slot_holders() for kind, queue in self.queues.items()}
        with self._lock:
            for task_id in [task_id for task_id, tracked in self.tracked.items()
                            if task_id not in in_slots[tracked.kind]]:
                del self.tracked[task_id]
            live = [(task_id, tracked.kind) for task_id, tracked in self.tracked.items()
                    if tracked.runner is not None and self.runners.get(tracked.runner, 0.0) > self.clock()]
        for task_id, kind in live:
            self.queues[kind].renew(task_id)
        return len(live)
