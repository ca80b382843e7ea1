"""The invariants, from the task records in Redis and the runners' own logs.

- No event lost: every expected work identity has a task record or ran.
- No identity active twice: the Sampler reads every record that is not finished yet, in one MGET (one
  moment of Redis), a few times a second during the whole run; two queued/dispatched/running records of
  one identity at one moment are a violation. And no identity completed twice in the runners' logs.
- Nothing stuck: after recovery every task is completed, failed or still queued.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from chaos.config import BOEFJES
from chaos.load import Published
from kat_scheduler.models.tasks import TaskStatus, identity_hash
from kat_scheduler.repositories.task_records import TaskRecord, TaskRepository
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)

ACTIVE = {TaskStatus.QUEUED, TaskStatus.DISPATCHED, TaskStatus.RUNNING}
IN_FLIGHT = {TaskStatus.DISPATCHED, TaskStatus.RUNNING}
FINISHED = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}


Identity = tuple[str | None, ...]  # the parts of a work identity (BoefjeTask.identity)


def expected_identities(events: Iterable[Published]) -> set[Identity]:
    """Work identities (kat-contracts.md §5) the load's events ask for: one per boefje."""
    return {(event.primary_key, boefje, event.organisation) for event in events for boefje in BOEFJES}


@dataclass(frozen=True)
class Violation:
    at: float
    identity_hash: str
    task_ids: tuple[str, ...]


@dataclass
class Snapshot:
    at: float
    records: dict[str, TaskRecord]  # every record of the run, by task id

    def by_hash(self) -> dict[str, list[TaskRecord]]:
        found: dict[str, list[TaskRecord]] = defaultdict(list)
        for record in self.records.values():
            found[record.hash].append(record)
        return found

    def count(self, statuses: set[TaskStatus]) -> int:
        return sum(1 for record in self.records.values() if record.status in statuses)


class Sampler(threading.Thread):
    """Samples the boefje queue's records; finished records are read once and then kept."""

    def __init__(self, client: redis.Redis, key_prefix: str, interval: float = 0.3) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        self.repository = TaskRepository(client, key_prefix, "boefje")
        self.interval = interval
        self.violations: list[Violation] = []
        self.samples = 0
        self.failed_samples = 0
        self._finished: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def sample(self) -> Snapshot:
        """One moment of the records (raises StoreUnavailable while Redis is away)."""
        with self._lock:
            ids = [task_id for task_id in self.repository.task_ids() if task_id not in self._finished]
            fresh = self.repository.get_many(ids)  # one MGET: one moment
            at = time.time()
            active: dict[str, list[str]] = defaultdict(list)
            for record in fresh:
                if record.status in FINISHED:
                    self._finished[record.id] = record
                elif record.status in ACTIVE:
                    active[record.hash].append(record.id)
            for identity, task_ids in active.items():
                if len(task_ids) > 1:
                    logger.error("identity %s active twice: %s", identity, task_ids)
                    self.violations.append(Violation(at, identity, tuple(sorted(task_ids))))
            self.samples += 1
            return Snapshot(at, {**self._finished, **{record.id: record for record in fresh}})

    def try_sample(self) -> Snapshot | None:
        try:
            return self.sample()
        except StoreUnavailable as error:
            self.failed_samples += 1
            logger.debug("sample failed: %r", error)
            return None

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.try_sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def violations_between(self, since: float, until: float) -> list[Violation]:
        return [violation for violation in self.violations if since <= violation.at < until]


@dataclass(frozen=True, slots=True)
class RunLine:
    event: str
    task_id: str
    identity: Identity
    at: float


@dataclass
class RunnerLogs:
    """What the runners say ran: every *.jsonl file of the run's runner log directory."""

    directory: Path
    lines: list[RunLine] = field(default_factory=list)

    def read(self) -> RunnerLogs:
        lines = []
        for path in sorted(self.directory.glob("*.jsonl")):
            for text in path.read_text(encoding="utf-8").splitlines():
                try:
                    line = json.loads(text)
                except json.JSONDecodeError:
                    continue  # the last line of a runner killed while writing it
                lines.append(RunLine(line["event"], line["id"], tuple(line["identity"]), float(line["at"])))
        lines.sort(key=lambda line: line.at)
        self.lines = lines
        return self

    def ran(self) -> set[Identity]:
        """Identities that started at least once."""
        return {line.identity for line in self.lines if line.event == "start"}

    def completed(self) -> dict[Identity, list[float]]:
        ends: dict[Identity, list[float]] = defaultdict(list)
        for line in self.lines:
            if line.event == "end":
                ends[line.identity].append(line.at)
        return ends

    def completed_twice(self, since: float = 0.0, until: float = float("inf")) -> set[Identity]:
        """Identities whose second (or later) completion falls in [since, until)."""
        return {identity for identity, ends in self.completed().items()
                if len(ends) > 1 and any(since <= at < until for at in ends[1:])}

    def first_completion_after(self, moment: float) -> float | None:
        return next((line.at for line in self.lines if line.event == "end" and line.at > moment), None)


@dataclass
class Verdict:
    """The invariants over one set of expected identities."""

    expected: int
    lost: list[Identity]  # identities with neither a record nor a run
    unfinished: list[Identity]  # identities whose tasks are not completed or failed yet
    stuck: list[Identity]  # of those, dispatched or running
    failed: list[Identity]

    @property
    def drained(self) -> bool:
        return not self.unfinished and not self.lost


def judge(identities: set[Identity], snapshot: Snapshot, logs: RunnerLogs) -> Verdict:
    by_hash = snapshot.by_hash()
    ran = logs.ran()
    lost: list[Identity] = []
    unfinished: list[Identity] = []
    stuck: list[Identity] = []
    failed: list[Identity] = []
    for identity in sorted(identities, key=str):
        records = by_hash.get(identity_hash(identity), [])
        if not records and identity not in ran:
            lost.append(identity)
            continue
        statuses = {record.status for record in records}
        if not statuses or statuses & ACTIVE:
            unfinished.append(identity)
            if statuses & IN_FLIGHT:
                stuck.append(identity)
        elif TaskStatus.COMPLETED not in statuses and TaskStatus.FAILED in statuses:
            failed.append(identity)
    return Verdict(len(identities), lost, unfinished, stuck, failed)
