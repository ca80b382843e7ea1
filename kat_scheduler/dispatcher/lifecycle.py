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
is renewed; when the runner is lost, the lease is cut to a short grace (see `runner_lost`).

A runner is a process, not a name: a container or pod that restarts comes back under the same
`-n` name, and its heartbeats must not keep the lost process's tasks alive. A runner is lost when
- it goes offline, or its heartbeats stop for two intervals;
- its name comes online again, or its heartbeats carry another pid or a `processed` count that went
  back: a new process under the old name (a restart faster than a heartbeat included);
- asked what it holds (`reconcile`, from the upkeep loop), it twice in a row does not list a task it
  received: that task alone is lost, which covers a restart whose events this dispatcher missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kat_scheduler.dispatcher.routes import Route
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.queues import Change, PriorityQueue
from kat_scheduler.repositories.task_records import TaskRecord
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 2.0  # Celery's worker heartbeat interval, when an event does not say
HEARTBEAT_MISSES = 2.0  # a runner is lost after this many heartbeat intervals without one
UNLISTED_MISSES = 2  # a task its runner does not list this many times in a row is lost
FOREIGN_MEMORY = 10_000  # how many ids of other Celery tasks to remember as not ours
UNAPPLIED_MEMORY = 100_000  # task events kept while Redis is away, to apply once it is back


@dataclass(slots=True)
class Tracked:
    kind: str
    organisation: str | None = None  # None: not looked up yet
    runner: str | None = None  # the hostname of the runner that received it
    unlisted: int = 0  # how many times in a row that runner, asked, did not list it


@dataclass(slots=True)
class Runner:
    """One runner process, as its heartbeats describe it."""

    until: float  # lost by then without a new heartbeat
    pid: int | None
    processed: int  # tasks it has finished: only grows while the process lives


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
        on_heartbeat: Callable[[str, int | None, int | None], None] = lambda *_: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queues = dict(queues)
        self.kind_of_task_name = {route.task_name: route.kind for route in routes}
        self.lost_runner_grace = lost_runner_grace
        self.on_slot_freed = on_slot_freed
        self.on_runners_changed = on_runners_changed
        self.on_heartbeat = on_heartbeat  # shows the runner to people (repositories/runner_presence.py)
        self.clock = clock
        self.tracked: dict[str, Tracked] = {}
        self.foreign: OrderedDict[str, None] = OrderedDict()  # recent task ids that are not ours
        self.runners: dict[str, Runner] = {}  # by hostname
        self.unapplied: deque[dict[str, Any]] = deque(maxlen=UNAPPLIED_MEMORY)  # task events Redis missed
        self._lock = threading.Lock()  # guards tracked, foreign, runners, unapplied and each Tracked
        self._replaying = threading.Lock()  # one replay at a time
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "task-sent": self._on_sent,
            "task-received": self._on_received,
            "task-started": self._on_started,
            "task-succeeded": lambda event: self._end(event, failed=False),
            "task-failed": lambda event: self._end(event, failed=True),
            "task-revoked": lambda event: self._end(event, failed=True),
            "task-rejected": self._on_rejected,
            "worker-online": lambda event: self._on_heartbeat(event, online=True),
            "worker-heartbeat": self._on_heartbeat,
            "worker-offline": lambda event: self.runner_lost(event.get("hostname", ""), "it went offline"),
        }

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """The EventReceiver's handler: never raises, so one bad event cannot stop the receiver.

        A task event that meets a Redis outage is kept and applied, in order, once Redis is back
        (`replay`): a task that finished during the outage must not run again when its lease runs out.
        A worker event is not kept: the leases of a lost runner's tasks run out as usual."""
        is_task_event = event.get("type", "").startswith("task-")
        with self._lock:
            if is_task_event and self.unapplied:  # keep the order: behind the events still waiting
                self.unapplied.append(event)
                return
        if self._apply(event) or not is_task_event:
            return
        with self._lock:
            self.unapplied.append(event)
        logger.warning("could not apply %s of task %s: Redis is away; keeping task events until it is back",
                       event.get("type"), event.get("uuid"), extra=task_fields(event.get("uuid")))

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply one event; False when Redis was away. Any other failure is logged and the event dropped."""
        handler = self._handlers.get(event.get("type", ""))
        try:
            if handler is not None:
                handler(event)
        except StoreUnavailable:
            return False
        except Exception:
            logger.exception("could not apply event %r", event)
        return True

    def replay(self) -> int:
        """Apply the task events kept during a Redis outage, oldest first; answers how many were applied.
        Stops at the first that meets the outage again. The dispatcher calls this before it claims and
        before it reaps, so outcomes heard during the outage are written before anything is reaped."""
        applied = 0
        with self._replaying:
            while True:
                with self._lock:
                    if not self.unapplied:
                        break
                    event = self.unapplied.popleft()
                if not self._apply(event):
                    with self._lock:
                        self.unapplied.appendleft(event)
                    break
                applied += 1
        if applied:
            logger.info("applied %d task events heard while Redis was away", applied)
        return applied

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
            self._held_by(tracked, event.get("hostname"))

    def _on_started(self, event: dict[str, Any]) -> None:
        task_id = event["uuid"]
        tracked = self._find(task_id)
        if tracked is None:
            return
        self._held_by(tracked, event.get("hostname"))
        outcome = self.queues[tracked.kind].mark_running(task_id, started_ms=_started_ms(event),
                                                         runner=event.get("hostname"))
        if logger.isEnabledFor(logging.DEBUG):  # naming the organisation may cost a Redis read
            about, fields = self._about(task_id, tracked)
            logger.debug("%s started on %s (%s)", about, tracked.runner, outcome, extra=fields)

    def _on_rejected(self, event: dict[str, Any]) -> None:
        if not event.get("requeue"):
            self._end(event, failed=True)
            return
        tracked = self._find(event["uuid"])
        if tracked is not None:  # the broker hands it to another runner; it keeps its slot and lease
            about, fields = self._about(event["uuid"], tracked)
            logger.info("%s went back to the broker from %s", about, tracked.runner, extra=fields)
            self._held_by(tracked, None)

    def _end(self, event: dict[str, Any], failed: bool) -> None:
        task_id = event["uuid"]
        tracked = self._find(task_id)
        if tracked is None:
            return
        outcome = self.queues[tracked.kind].ack(task_id, failed=failed)
        about, fields = self._about(task_id, tracked)
        self.forget(task_id)
        if outcome is not Change.OK:  # another dispatcher applied this event first, or the lease ran out
            logger.debug("%s: %s ignored (%s)", about, event["type"], outcome, extra=fields)
            return
        if failed:
            logger.warning("%s failed on %s: %s", about, event.get("hostname"),
                           event.get("exception") or event["type"], extra=fields)
        else:
            logger.info("%s completed on %s", about, event.get("hostname"), extra=fields)
        self.on_slot_freed()

    def forget(self, task_id: str) -> None:
        """The task left our hands (ended, or handed back to the queue)."""
        with self._lock:
            self.tracked.pop(task_id, None)

    def _held_by(self, tracked: Tracked, hostname: str | None) -> None:
        with self._lock:
            tracked.runner = hostname
            tracked.unlisted = 0

    def _find(self, task_id: str, kind: str | None = None) -> Tracked | None:
        """Our bookkeeping of a task, or None when it is not one the dispatchers forwarded."""
        with self._lock:
            tracked = self.tracked.get(task_id)
            if tracked is not None or task_id in self.foreign:
                return tracked
        kinds = [kind] if kind else list(self.queues)
        for candidate in kinds:  # forwarded by a dispatcher that was not us, or before we started
            if self.queues[candidate].in_slot(task_id):  # asked outside the lock: it waits on Redis
                with self._lock:
                    return self.tracked.setdefault(task_id, Tracked(candidate))
        with self._lock:
            self.foreign[task_id] = None  # other Celery tasks: look each up once, not on every event
            if len(self.foreign) > FOREIGN_MEMORY:
                self.foreign.popitem(last=False)
        return None

    def _about(self, task_id: str, tracked: Tracked) -> tuple[str, dict[str, str]]:
        """How a log line names the task, and its fields (logging_setup.task_fields)."""
        if tracked.organisation is None:
            record = self.queues[tracked.kind].records.get(task_id)
            with self._lock:
                tracked.organisation = record.organisation if record else "?"
        return (f"task {task_id} ({tracked.kind}, organisation {tracked.organisation})",
                task_fields(task_id, tracked.kind, tracked.organisation))

    # -- runners -----------------------------------------------------------------------------

    def _on_heartbeat(self, event: dict[str, Any], online: bool = False) -> None:
        hostname = event.get("hostname", "")
        interval = float(event.get("freq") or DEFAULT_HEARTBEAT_SECONDS)
        now = Runner(self.clock() + interval * HEARTBEAT_MISSES, _int_or_none(event.get("pid")),
                     _int_or_none(event.get("processed")) or 0)
        with self._lock:
            before = self.runners.get(hostname)
        restart = _restart(before, now, online) if before is not None else None
        if restart:
            self.runner_lost(hostname, f"a new process runs under its name ({restart})")
        with self._lock:
            new = hostname not in self.runners
            self.runners[hostname] = now
        if new:
            logger.info("worker %s is up (pid %s)", hostname, now.pid)
            self.on_runners_changed()
        self.on_heartbeat(hostname, _int_or_none(event.get("active")), now.processed)

    def alive(self, hostname: str | None) -> bool:
        with self._lock:
            return hostname is not None and self._alive(hostname)

    def _alive(self, hostname: str) -> bool:
        """Call holding the lock."""
        runner = self.runners.get(hostname)
        return runner is not None and runner.until > self.clock()

    def check_runners(self) -> None:
        """Runners whose heartbeats stopped are lost."""
        now = self.clock()
        with self._lock:
            silent = [hostname for hostname, runner in self.runners.items() if runner.until <= now]
        for hostname in silent:
            self.runner_lost(hostname, "its heartbeats stopped")

    def runner_lost(self, hostname: str, why: str) -> None:
        """Cut the leases of the lost runner's tasks to `lost_runner_grace` seconds.

        Runners ack late and reject on worker loss, so a broker that redelivers unacknowledged
        messages (RabbitMQ does at once) hands the task to another runner, whose task-started event
        takes it over and renews it again. A broker that does not (Redis, until its visibility
        timeout) leaves the task to reap, which returns it to the queue after the grace, counting the
        attempt: a task that keeps killing its runners ends in the dead letters instead of going round
        for ever.
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
            self._cut_lease(task_id, tracked, f"was on lost runner {hostname}")

    def _cut_lease(self, task_id: str, tracked: Tracked, why: str) -> None:
        outcome = self.queues[tracked.kind].renew(task_id, lease_seconds=self.lost_runner_grace)
        about, fields = self._about(task_id, tracked)
        logger.warning("%s %s; it returns to the queue in %.0f s unless a runner starts it (%s)",
                       about, why, self.lost_runner_grace, outcome, extra=fields)

    def reconcile(self, holders: Mapping[str, str], answered: set[str]) -> None:
        """What the runners say they hold (task id -> hostname), from the runners that `answered`.

        A listed task is held by the runner that lists it. A task that a runner which answered has
        received but does not list, twice in a row, is lost on its own: its runner was restarted, or
        lost it, without this dispatcher hearing of it."""
        with self._lock:
            untracked = [task_id for task_id in holders if task_id not in self.tracked]
        for task_id in untracked:  # forwarded by another dispatcher, or before this one started
            self._find(task_id)
        lost: list[tuple[str, Tracked, str]] = []
        with self._lock:
            for task_id, tracked in self.tracked.items():
                holder = holders.get(task_id)
                if holder is not None:
                    tracked.runner, tracked.unlisted = holder, 0
                elif tracked.runner in answered:
                    tracked.unlisted += 1
                    if tracked.unlisted >= UNLISTED_MISSES:
                        lost.append((task_id, tracked, tracked.runner))
                        tracked.runner, tracked.unlisted = None, 0
        for task_id, tracked, hostname in lost:
            self._cut_lease(task_id, tracked, f"is not held by {hostname}, which received it")

    # -- leases ------------------------------------------------------------------------------

    def renew_live(self) -> int:
        """Renew the lease of every task held by a live runner; forget tasks that left their slot."""
        in_slots = {kind: queue.slot_holders() for kind, queue in self.queues.items()}
        with self._lock:
            for task_id in [task_id for task_id, tracked in self.tracked.items()
                            if task_id not in in_slots[tracked.kind]]:
                del self.tracked[task_id]
            live = [(task_id, tracked.kind) for task_id, tracked in self.tracked.items()
                    if tracked.runner is not None and self._alive(tracked.runner)]
        for task_id, kind in live:
            self.queues[kind].renew(task_id)
        return len(live)


def _started_ms(event: dict[str, Any]) -> int | None:
    """When the runner says the task started (its event's timestamp), in ms."""
    try:
        return int(float(event["timestamp"]) * 1000)
    except (KeyError, TypeError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _restart(before: Runner, now: Runner, online: bool) -> str:
    """Why the heartbeat `now` comes from another process than `before` did ("" when it does not)."""
    if online:
        return "it came online again"
    if before.pid is not None and now.pid is not None and before.pid != now.pid:
        return f"pid {before.pid}, now {now.pid}"
    if now.processed < before.processed:
        return f"its processed count went back from {before.processed} to {now.processed}"
    return ""
