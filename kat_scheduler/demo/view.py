"""What the demo shows: a live view while it runs and a summary at the end, both read from Redis."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from kat_scheduler.context import AppContext
from kat_scheduler.models import TaskStatus


@dataclass
class Tally:
    """Task records per kind and status, and the objects the run added and then scanned."""

    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    scanned_objects: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def read(cls, context: AppContext) -> Tally:
        tally = cls()
        for kind, queue in context.queues.items():
            records = queue.records.history(limit=queue.records.count() or 1)
            tally.statuses[kind] = Counter(record.status.value for record in records)
            if kind == "boefje":
                tally.scanned_objects = {(r.organisation, r.ooi) for r in records}
        return tally

    def count(self, kind: str, *statuses: TaskStatus) -> int:
        return sum(self.statuses.get(kind, Counter())[status.value] for status in statuses)

    def total(self, kind: str) -> int:
        return sum(self.statuses.get(kind, Counter()).values())


STATUS_COLUMNS = (TaskStatus.QUEUED, TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.COMPLETED,
                  TaskStatus.FAILED, TaskStatus.CANCELLED)


def live_view(context: AppContext, events_handled: int, events_per_second: float, elapsed: float) -> str:
    tally = Tally.read(context)
    lines = [f"kat_scheduler demo, {elapsed:5.1f} s: {events_handled} events handled ({events_per_second:.0f}/s)",
             "kind        " + "".join(f"{status.value:>12}" for status in STATUS_COLUMNS)]
    for kind in context.queues:
        lines.append(f"{kind:<12}" + "".join(f"{tally.count(kind, status):>12}" for status in STATUS_COLUMNS))
    for kind, queue in context.queues.items():
        depth = ", ".join(f"{org} {n}" for org, n in sorted(queue.counts().items())) or "empty"
        lines.append(f"{kind} queue per organisation: {depth}")
        for record in queue.peek(3):
            plugin_and_input = f"{record.plugin_id} on {record.ooi}" if record.ooi else record.plugin_id
            lines.append(f"  next: {record.organisation:<6} {plugin_and_input:<60} score {record.score}")
    return "\n".join(lines)


def summary(context: AppContext, added_objects: set[tuple[str, str]]) -> tuple[str, dict[str, int]]:
    """The closing lines, and the figures a test can check."""
    tally = Tally.read(context)
    closed_loops = len(added_objects & tally.scanned_objects)
    figures: dict[str, int] = {}
    lines = ["summary"]
    for kind in context.queues:
        created, run, failed = (tally.total(kind), tally.count(kind, TaskStatus.COMPLETED),
                                tally.count(kind, TaskStatus.FAILED))
        figures |= {f"{kind}_created": created, f"{kind}_completed": run, f"{kind}_failed": failed}
        lines.append(f"  {kind + ' tasks:':<18}{created} created, {run} run, {failed} failed")
    figures |= {"objects_added": len(added_objects), "closed_loops": closed_loops}
    lines.append(f"  closed loops:     {closed_loops} (boefje -> raw file -> normalizer -> new object -> new boefje "
                 f"task; {len(added_objects)} objects added)")
    text = "\n".join(lines)
    return text, figures


class Rate:
    """Events per second over the last few seconds."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), 0)

    def update(self, count: int) -> float:
        now = time.monotonic()
        then, before = self._last
        self._last = (now, count)
        return (count - before) / (now - then) if now > then else 0.0
