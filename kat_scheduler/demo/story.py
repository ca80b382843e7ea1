"""What the scheduler made of the show, read from Redis: the serving log (runners.py) and the task records.

The `Narrator` says each thing in the journal once, as it sees it; `find` works out the figures of the
summary at the end. Neither takes the script's word for an outcome: the script only says what it did
(which task the pull runner popped, which manual run was pushed and what was waiting then).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kat_scheduler.context import AppContext
from kat_scheduler.demo.journal import Journal
from kat_scheduler.demo.runners import DISPATCHER, Popped, Served, ServingLog
from kat_scheduler.demo.script import Cast, ManualRun, Played, Script, short
from kat_scheduler.models import FINAL_STATUSES, TaskStatus
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.rankers.boefje import RESCAN_MIN_DELAY_MS
from kat_scheduler.repositories.task_records import HOUR_MS, TaskRecord
from kat_scheduler.simulation.changes import DELETED, LEVEL_LOWERED, LEVEL_RAISED, NEW_OBJECT

LATELY = 12  # organisations shown in the order they were served lately
FEW_TURNS = 6  # fewer hand-outs than this since the last report show no turns worth a line
LEASE_EXPIRED = "lease expired"  # queue.lua's note in a task's history when the reaper requeues it
ALL = 1_000_000  # more task records than a demo makes


def now_ms() -> int:
    return int(time.time() * 1000)


def plural(count: int, one: str, many: str | None = None) -> str:
    """"1 task", "3 tasks"."""
    return f"{count} {one if count == 1 else many or one + 's'}"


# -- the manual run ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManualOutcome:
    position: int  # among the tasks waiting when it was pushed: 1 is before all of them
    served_before: int  # how many of those it was handed out before
    at_ms: int


def manual_outcome(run: ManualRun, served: Sequence[Served]) -> ManualOutcome | None:
    """Where the manual run was handed out among the tasks that were waiting when it was pushed."""
    ahead: set[str] = set()
    for entry in served:
        if entry.task_id == run.task_id:
            return ManualOutcome(len(ahead) + 1, len(run.waiting) - len(ahead), entry.at_ms)
        if entry.task_id in run.waiting:
            ahead.add(entry.task_id)
    return None


# -- the killed runner's task ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recovery:
    task_id: str
    lease_ran_out: bool
    served_again: Served | None  # the next hand-out after the pull runner's pop
    status: TaskStatus | None  # None once the record is gone
    modified_ms: int | None
    requeued_ms: int | None = None  # when the reaper put it back in the queue (the record's history)

    @property
    def recovered(self) -> bool:
        return self.lease_ran_out and self.served_again is not None and self.status is TaskStatus.COMPLETED


def recovery_of(queue: PriorityQueue, popped: Popped, served: Sequence[Served]) -> Recovery:
    record = queue.records.get(popped.task_id)
    mine = [entry for entry in served if entry.task_id == popped.task_id]
    pops = [n for n, entry in enumerate(mine) if entry.by != DISPATCHER]
    again = mine[pops[0] + 1] if pops and len(mine) > pops[0] + 1 else None
    if record is None:
        return Recovery(popped.task_id, False, again, None, None)
    requeued = [change.at_ms for change in record.history()
                if change.status == TaskStatus.QUEUED.value and change.note == LEASE_EXPIRED]
    return Recovery(popped.task_id, record.expired_leases > 0, again, record.status, record.modified_ms,
                    requeued[0] if requeued else None)


# -- organisations taking turns ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turns:
    order: list[str]  # the organisation of each task handed out, in order; manual runs take no turn
    alternations: int  # how often the turn passed between the flooding and the trickling organisation
    longest_wait: int  # the most tasks of other organisations handed out in a row while a trickle task waited

    def served(self, organisation: str) -> int:
        return self.order.count(organisation)


Span = tuple[int, float]  # a task's wait: from its push to its hand-out (ms); inf while it still waits


def turns_in(entries: Sequence[Served], records: Mapping[str, TaskRecord], cast: Cast,
             trickle_waits: Sequence[Span] = ()) -> Turns:
    """The turns among `entries` (boefje hand-outs); `trickle_waits`: when the trickle's tasks waited."""
    runs = [(entry, records[entry.task_id]) for entry in entries
            if entry.task_id in records and records[entry.task_id].score >= 0]
    order = [record.organisation for _, record in runs]
    pair = [organisation for organisation in order if organisation in (cast.flood, cast.trickle)]
    alternations = sum(1 for before, after in itertools.pairwise(pair) if before != after)
    streak = longest = 0
    for entry, record in runs:
        waiting = any(pushed < entry.at_ms < until for pushed, until in trickle_waits)
        streak = streak + 1 if record.organisation != cast.trickle and waiting else 0
        longest = max(longest, streak)
    return Turns(order, alternations, longest)


def waiting_spans(records: Iterable[TaskRecord], first_served: Mapping[str, int]) -> list[Span]:
    """When each task waited: from its push to its first hand-out, its cancel, or still (inf)."""
    spans: list[Span] = []
    for record in records:
        if record.id in first_served:
            spans.append((record.created_ms, first_served[record.id]))
        elif record.status is TaskStatus.QUEUED:
            spans.append((record.created_ms, math.inf))
        elif record.status is TaskStatus.CANCELLED:
            spans.append((record.created_ms, record.modified_ms))
    return spans


# -- recurring work, changes, cancellations ----------------------------------------------------


def is_rescan(record: TaskRecord) -> bool:
    """Work that ran before is ranked at least RESCAN_MIN_DELAY_MS after its push (rankers/boefje.py)."""
    return record.score - record.created_ms >= RESCAN_MIN_DELAY_MS - 1000


def cancelled_count(queue: PriorityQueue, since_ms: int) -> int:
    """Tasks cancelled since `since_ms` (the hourly counters count each task under its last change)."""
    hours = list(range(since_ms - since_ms % HOUR_MS, now_ms() + 1, HOUR_MS))
    return sum(n for counts in queue.records.hourly_counts(hours) for (status, _), n in counts.items()
               if status == TaskStatus.CANCELLED.value)


def describe_changes(counts: Counter[str]) -> str:
    parts = [(counts[NEW_OBJECT], "new object", "new objects"), (counts[LEVEL_RAISED], "level raised", "levels raised"),
             (counts[LEVEL_LOWERED], "lowered", "lowered"), (counts[DELETED], "deleted", "deleted")]
    return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in parts if n) or "no changes"


def waiting_per_organisation(queue: PriorityQueue) -> str:
    """The queue per organisation, the longest first."""
    counts = sorted(queue.counts().items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{organisation} {n}" for organisation, n in counts) or "none"


# -- the narrator ------------------------------------------------------------------------------


class Narrator:
    """Polls Redis and writes in the journal what the scheduler did, each thing once."""

    def __init__(self, context: AppContext, serving: ServingLog, journal: Journal, script: Script,
                 celery_runner: str, every: float) -> None:
        self.context = context
        self.boefjes = context.queues["boefje"]
        self.serving = serving
        self.journal = journal
        self.script = script
        self.celery_runner = celery_runner
        self.every = every
        self.served: list[Served] = []
        self.records: dict[str, TaskRecord] = {}  # the boefje tasks handed out, by id
        self.flood_peak = 0
        self._said: set[str] = set()
        self._seen: set[str] = set()
        self._rescans: list[TaskRecord] = []
        self._report_rounds = 0
        self._read_since_ms = journal.started_ms
        self._next_report = every
        self._reported_from = 0.0
        self._reported_served = 0
        self._changes_then: Counter[str] = Counter()
        self._boefjes_then = 0
        self._cancelled_then = 0

    @property
    def played(self) -> Played:
        return self.script.played

    def poll(self) -> None:
        self._read_served()
        self._watch_manual_run()
        self._watch_killed_runner()
        self._read_new_records()
        if self.played.flood_ms is not None:
            self.flood_peak = max(self.flood_peak, self.boefjes.counts().get(self.script.cast.flood, 0))
        elapsed = self.journal.elapsed()
        if elapsed >= self._next_report:
            self._report_period(elapsed)

    def unfinished(self) -> list[str]:
        """The scenes whose outcome the narrator has not seen yet: a manual run not handed out, a killed
        runner's task not ended."""
        played, left = self.played, []
        if played.manual is not None and manual_outcome(played.manual, self.served) is None:
            left.append("the manual run")
        if played.popped is not None and played.killed_ms is not None:
            status = recovery_of(self.boefjes, played.popped, self.served).status
            if status is not None and status not in FINAL_STATUSES:
                left.append(f"task {short(played.popped.task_id)} of the killed runner")
        return left

    def _say_once(self, key: str, text: str, at_ms: int | None = None) -> None:
        if key not in self._said:
            self._said.add(key)
            self.journal.add(text, at_ms)

    def _read_served(self) -> None:
        fresh = self.serving.read(len(self.served))
        self.served += fresh
        wanted = [entry.task_id for entry in fresh if entry.kind == "boefje" and entry.task_id not in self.records]
        self.records.update((record.id, record) for record in self.boefjes.records.get_many(wanted))

    def _watch_manual_run(self) -> None:
        run = self.played.manual
        outcome = manual_outcome(run, self.served) if run else None
        if run is None or outcome is None:
            return
        if outcome.position == 1:
            text = (f"the manual run was served first: a runner got {run.describe()} before any of the "
                    f"{len(run.waiting)} tasks that were waiting (a manual run comes before every organisation's "
                    "turn)")
        else:
            text = (f"the manual run was handed out only after {outcome.position - 1} of the {len(run.waiting)} "
                    "tasks that were waiting")
        self._say_once("manual", text, outcome.at_ms)

    def _watch_killed_runner(self) -> None:
        popped = self.played.popped
        if popped is None or self.played.killed_ms is None:
            return
        recovery = recovery_of(self.boefjes, popped, self.served)
        task = f"task {short(popped.task_id)}"
        again = recovery.served_again
        if recovery.lease_ran_out:
            self._say_once("lease", f"{task}: its lease ran out, so the scheduler put it back in the queue, in its "
                           f"old place (after {self.boefjes.max_attempts} expired leases it would be a dead letter)",
                           recovery.requeued_ms)
        if again is not None and again.by == DISPATCHER:
            self._say_once("again", f"{task} handed out again, by the dispatcher to the Celery runner", again.at_ms)
        if recovery.recovered:
            self._say_once("recovered", f"{task} completed by the Celery runner {self.celery_runner}: the killed "
                           "runner's task was not lost", recovery.modified_ms)
        elif recovery.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            self._say_once("lost", f"{task} {recovery.status.value}", recovery.modified_ms)

    def _read_new_records(self) -> None:
        """Report tasks their schedules queued, and rescans, among the records made since the last poll."""
        since, self._read_since_ms = self._read_since_ms - 2000, now_ms()  # overlapping: clocks of writers differ
        reports = [r for r in self._fresh_records("report", since) if r.schedule_id]
        if reports:
            organisations = ", ".join(sorted({r.organisation for r in reports}))
            when = ("set up at the start to fall due now, then every minute, on the minute"
                    if not self._report_rounds else "again: the next whole minute came round")
            self._report_rounds += 1
            self.journal.add(f"recurring: the report schedules of {organisations} fell due ({when}); the beat "
                             f"queued {plural(len(reports), 'report task')}", min(r.created_ms for r in reports))
        self._rescans += [r for r in self._fresh_records("boefje", since) if is_rescan(r)]

    def _fresh_records(self, kind: str, since_ms: int) -> list[TaskRecord]:
        records = self.context.queues[kind].records
        created = records.newest_created(records.organisations(), str(since_ms), "+inf", ALL)
        fresh = [c.task_id for c in created if c.task_id not in self._seen]
        self._seen.update(fresh)
        return records.get_many(fresh)

    def _report_period(self, elapsed: float) -> None:
        """Every `every` seconds: the world's changes and what the scheduler queued and cancelled for them,
        the rescans, and during the flood the turns."""
        self._say_changes()
        if self._rescans:
            self._say_rescans()
        if self.played.flood_ms is not None:
            self._say_turns()
        self._reported_from, self._next_report = elapsed, elapsed + self.every
        self._reported_served = len(self.served)

    def _say_rescans(self) -> None:
        example, count = self._rescans[0], len(self._rescans)
        queued = "was queued as a rescan" if count == 1 else "were queued as rescans"
        self.journal.add(f"recurring: {plural(count, 'boefje run')} came round again after the grace period "
                         f"({self.context.settings.grace_period} s) and {queued}, ranked a minute or more behind "
                         f"first scans (e.g. {example.plugin_id} on {example.ooi} for {example.organisation})")
        self._rescans = []

    def _say_changes(self) -> None:
        changes = self.script.changes.counts()
        boefjes = self.boefjes.records.count()
        cancelled = cancelled_count(self.boefjes, self.journal.started_ms)
        first = " (the first scans of the objects there at the start among them)" if not self._boefjes_then else ""
        made = describe_changes(changes - self._changes_then)
        self.journal.add(f"since {self._reported_from:.0f} s Octopoes made {made}; the scheduler queued "
                         f"{plural(boefjes - self._boefjes_then, 'boefje task')}{first} and cancelled "
                         f"{cancelled - self._cancelled_then} queued ones, because their object's level went down "
                         "or the object was deleted")
        self._changes_then, self._boefjes_then, self._cancelled_then = changes, boefjes, cancelled

    def _say_turns(self) -> None:
        """The turns since the last report or the flood, whichever came later; too few say nothing."""
        flood_ms = self.played.flood_ms or 0
        since = max(self._reported_from, (flood_ms - self.journal.started_ms) / 1000)
        entries = [e for e in self.served[self._reported_served:] if e.kind == "boefje" and e.at_ms >= flood_ms]
        turns = turns_in(entries, self.records, self.script.cast)
        if len(turns.order) < FEW_TURNS:
            return
        counts = Counter(turns.order)
        shares = ", ".join(f"{organisation} {n}" for organisation, n in sorted(counts.items()))
        self.journal.add(f"turns: boefje tasks waiting now {waiting_per_organisation(self.boefjes)}, yet the "
                         f"organisations take turns: of the {len(turns.order)} handed out since {since:.0f} s "
                         f"{shares}; the latest in this order: " + " ".join(turns.order[-LATELY:]))


# -- the figures at the end --------------------------------------------------------------------


@dataclass(frozen=True)
class Findings:
    """What the show showed, each figure from Redis."""

    cast: Cast
    played: Played
    manual_outcome: ManualOutcome | None
    recovery: Recovery | None
    turns: Turns | None
    flood_peak: int
    report_tasks: int
    rescans: int
    cancelled: int
    changes: Counter[str]
    grace_period: int
    celery_runner: str

    def figures(self) -> dict[str, int]:
        manual, turns = self.manual_outcome, self.turns
        return {
            "manual_waiting_at_push": len(self.played.manual.waiting) if self.played.manual else 0,
            "manual_served_position": manual.position if manual else 0,
            "manual_served_before_waiting": manual.served_before if manual else 0,
            "killed_runner_tasks": 1 if self.played.popped and self.played.killed_ms else 0,
            "recovered_tasks": 1 if self.recovery and self.recovery.recovered else 0,
            "flood_objects": self.played.flood_size,
            "flood_peak_waiting": self.flood_peak,
            "flood_served": turns.served(self.cast.flood) if turns else 0,
            "trickle_served": turns.served(self.cast.trickle) if turns else 0,
            "turns_alternated": turns.alternations if turns else 0,
            "trickle_longest_wait": turns.longest_wait if turns else 0,
            "report_schedules_due": self.report_tasks,
            "rescans_queued": self.rescans,
            "octopoes_changes": sum(self.changes.values()),
            "boefje_cancelled": self.cancelled,
        }

    def lines(self) -> list[str]:
        return ["what the show showed",
                f"  the world changed: Octopoes made {describe_changes(self.changes)} (the flood's "
                f"{self.played.flood_size} new hostnames among them); {self.cancelled} queued boefje tasks were "
                "cancelled because their object's level went down or the object was deleted",
                f"  recurring:         {self.report_tasks} report tasks queued by their schedules (each "
                f"organisation's report, every minute); {self.rescans} boefje runs came round again after the grace "
                f"period of {self.grace_period} s, ranked behind first scans",
                f"  flood and trickle: {self._turns_line()}",
                f"  manual run:        {self._manual_line()}",
                f"  killed runner:     {self._recovery_line()}"]

    def _turns_line(self) -> str:
        turns, cast = self.turns, self.cast
        if self.played.flood_ms is None or turns is None:
            return "the run ended before the flood"
        return (f"{cast.flood} flooded {self.played.flood_size} hostnames (up to {self.flood_peak} tasks waiting) "
                f"while {cast.trickle} trickled; from then on {turns.served(cast.flood)} of {cast.flood}'s and "
                f"{turns.served(cast.trickle)} of {cast.trickle}'s boefje tasks were handed out in turns: the turn "
                f"passed between them {turns.alternations} times, and {cast.trickle} never waited for more than "
                f"{turns.longest_wait} tasks of other organisations")

    def _manual_line(self) -> str:
        run, outcome = self.played.manual, self.manual_outcome
        if run is None:
            return "the run ended before a manual run was pushed"
        waiting = len(run.waiting)
        if outcome is None:
            return f"{run.describe()} was pushed behind {waiting} waiting tasks; the run ended before it was served"
        if outcome.position == 1:
            return f"{run.describe()} was pushed behind {waiting} waiting tasks and served first, before all of them"
        return (f"{run.describe()} was pushed behind {waiting} waiting tasks and served as number "
                f"{outcome.position}, before {outcome.served_before} of them")

    def _recovery_line(self) -> str:
        popped, recovery = self.played.popped, self.recovery
        if popped is None or recovery is None or self.played.killed_ms is None:
            return "the run ended before a runner was killed"
        task = f"task {short(popped.task_id)} ({popped.plugin_id} for {popped.organisation})"
        if recovery.recovered:
            return (f"{task} was popped by a pull runner that was killed; its lease ran out, it was queued again and "
                    f"completed by the Celery runner (recovered tasks: 1)")
        state = recovery.status.value if recovery.status else "gone"
        ran_out = "its lease ran out" if recovery.lease_ran_out else "its lease had not run out yet"
        return f"{task} was popped by a pull runner that was killed; {ran_out}; it is {state} (recovered tasks: 0)"


def find(context: AppContext, serving: ServingLog, narrator: Narrator) -> Findings:
    """The figures of the summary, from the serving log and every task record."""
    script, played = narrator.script, narrator.script.played
    served = serving.read()
    boefjes = context.queues["boefje"]
    records = {record.id: record for record in boefjes.records.history(limit=boefjes.records.count() or 1)}
    reports = context.queues["report"].records
    report_tasks = sum(1 for record in reports.history(limit=reports.count() or 1) if record.schedule_id)
    turns = None
    if played.flood_ms is not None:
        entries = [e for e in served if e.kind == "boefje" and e.at_ms >= played.flood_ms]
        first_served: dict[str, int] = {}
        for entry in served:
            first_served.setdefault(entry.task_id, entry.at_ms)
        trickle = [r for r in records.values() if r.organisation == script.cast.trickle]
        turns = turns_in(entries, records, script.cast, waiting_spans(trickle, first_served))
    return Findings(
        cast=script.cast, played=played,
        manual_outcome=manual_outcome(played.manual, served) if played.manual else None,
        recovery=recovery_of(boefjes, played.popped, served) if played.popped else None,
        turns=turns, flood_peak=narrator.flood_peak, report_tasks=report_tasks,
        rescans=sum(1 for record in records.values() if is_rescan(record)),
        cancelled=sum(1 for record in records.values() if record.status is TaskStatus.CANCELLED),
        changes=script.changes.counts(), grace_period=context.settings.grace_period,
        celery_runner=narrator.celery_runner)
