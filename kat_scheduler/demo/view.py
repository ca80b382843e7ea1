"""What the demo shows: a live view while it runs and a summary at the end, both read from Redis."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kat_scheduler.context import AppContext
from kat_scheduler.demo.journal import Journal
from kat_scheduler.kinds import KINDS
from kat_scheduler.models import TaskStatus

HAPPENED_LINES = 10  # the latest lines of the journal a terminal shows beneath the table
# A line the narrator writes about something it saw in Redis bears the moment it happened, which may be
# a poll or two ago: printing lines only once they are this old keeps them in the order they happened.
HOLD_BACK_SECONDS = 1.5


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


def live_view(context: AppContext, events_handled: int, events_per_second: float, elapsed: float,
              dashboard_url: str, happened: list[str]) -> str:
    """The screen of a terminal, redrawn every second: the table, then the latest of what happened."""
    lines = [table(context, events_handled, events_per_second, elapsed), f"dashboard: {dashboard_url}",
             "what just happened:"]
    lines += [f"  {line}" for line in happened] or ["  nothing yet"]
    return "\n".join(lines)


def table(context: AppContext, events_handled: int, events_per_second: float, elapsed: float) -> str:
    """The tasks per kind and status, and the head of each queue."""
    tally = Tally.read(context)
    lines = [f"kat_scheduler demo, {elapsed:5.1f} s: {events_handled} events handled ({events_per_second:.0f}/s)",
             "kind        " + "".join(f"{status.value:>12}" for status in STATUS_COLUMNS)]
    for kind in context.queues:
        lines.append(f"{kind:<12}" + "".join(f"{tally.count(kind, status):>12}" for status in STATUS_COLUMNS))
    for kind, queue in context.queues.items():
        depth = ", ".join(f"{org} {n}" for org, n in sorted(queue.counts().items())) or "empty"
        lines.append(f"{kind} queue per organisation: {depth}")
        ranker = KINDS[kind].ranking()
        for record in queue.peek(3):  # in the order claims take them, with the ranker's reason for each
            plugin_and_input = f"{record.plugin_id} on {record.ooi}" if record.ooi else record.plugin_id
            why = ranker.explain(record.score, record.created_ms, queue.records.last_run_ms(record.hash))
            lines.append(f"  next: {record.organisation:<6} {plugin_and_input:<60} {why}")
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


class Screen:
    """The live view on `out`. A terminal is redrawn every second: the table, the dashboard's address and
    the latest of what happened. Other output (a pipe, a file, a test) gets each line of the journal a
    moment after it happened, and the table every few seconds."""

    def __init__(self, context: AppContext, journal: Journal, dashboard_url: str, out: Any,
                 events_handled: Callable[[], int]) -> None:
        self.context = context
        self.journal = journal
        self.dashboard_url = dashboard_url
        self.out = out
        self.events_handled = events_handled
        self.redraw = bool(out.isatty())
        self.every = 1.0 if self.redraw else 5.0
        self.rate = Rate()
        self._next_table = self.every
        self._printed: set[int] = set()  # id() of the journal's entries printed

    def update(self, elapsed: float) -> None:
        if not self.redraw:
            self._print_new_lines(until=self.journal.elapsed() - HOLD_BACK_SECONDS)
        if elapsed < self._next_table:
            return
        self._next_table = elapsed + self.every
        handled = self.events_handled()
        rate = self.rate.update(handled)
        if self.redraw:
            happened = [entry.line() for entry in self.journal.last(HAPPENED_LINES)]
            self._print("\033[H\033[J" + live_view(self.context, handled, rate, elapsed, self.dashboard_url,
                                                    happened))
        else:
            self._print(table(self.context, handled, rate, elapsed))

    def close(self) -> None:
        """After the run: a terminal gets the whole journal (only its latest lines were on the screen), other
        output the lines it has not had yet."""
        if self.redraw:
            self._print("what happened:")
        self._print_new_lines()

    def _print_new_lines(self, until: float = math.inf) -> None:
        """The lines not printed yet that happened up to `until` (seconds into the run), in time order."""
        for entry in self.journal.entries():
            if entry.at <= until and id(entry) not in self._printed:
                self._printed.add(id(entry))
                self._print(entry.line())

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)
