"""Reading task records for the API: one task by id, filtered pages of the history, hourly stats.

Each kind's records store keeps a creation index per organisation (TaskRepository.created). A listing
restricted to organisations reads their own indexes, so the organisation scoping every OpenKAT list
carries is exact and costs nothing extra; one of all organisations merges them all. Conditions on
anything but the organisation and the time window are checked record by record, newest first, at most
SCAN_LIMIT records per index and request, so one listing never holds Redis or the API for long; beyond
that window the count is a lower bound (docs/api.md).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kat_scheduler.context.context import AppContext
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories.task_records import (
    HOUR_MS,
    StoredFields,
    TaskRecord,
    TaskRepository,
    ms_to_datetime,
)
from kat_scheduler.server.filters import FilterSet

SCAN_LIMIT = 20_000  # records read per index for one filtered listing
CHUNK = 1000  # records per MGET
TASK_COLUMNS = frozenset({"id", "scheduler_id", "schedule_id", "organisation", "priority", "status", "type", "hash",
                          "data", "attempts", "created_at", "modified_at"})


def find(context: AppContext, task_id: str) -> tuple[PriorityQueue, TaskRecord] | None:
    """The task with this id, whichever queue holds it."""
    for queue in context.queues.values():
        record = queue.records.get(task_id)
        if record is not None:
            return queue, record
    return None


async def find_batched(context: AppContext, task_id: str) -> tuple[PriorityQueue, TaskRecord] | None:
    """find, from a coroutine: the queues are asked at once, in one write (loop_pipe.py)."""
    queues = list(context.queues.values())
    records = await asyncio.gather(*(queue.records.get_batched(task_id) for queue in queues))
    return next(((queue, record) for queue, record in zip(queues, records, strict=True) if record is not None), None)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """What a listing asks for. `organisations` None: every organisation's tasks."""

    kinds: Sequence[str]
    organisations: frozenset[str] | None = None
    status: TaskStatus | None = None
    min_ms: int | None = None
    max_ms: int | None = None
    input_ooi: str | None = None  # a part of the object's primary key, in any case
    plugin_id: str | None = None
    filters: FilterSet = field(default_factory=FilterSet)
    offset: int = 0
    limit: int = 100

    @property
    def reads_records(self) -> bool:
        return (self.status is not None or self.input_ooi is not None or self.plugin_id is not None
                or not self.filters.empty)

    @property
    def bounds(self) -> tuple[str, str]:
        return ("-inf" if self.min_ms is None else str(self.min_ms),
                "+inf" if self.max_ms is None else str(self.max_ms))

    def keeps(self, kind: str, task_id: str, fields: StoredFields) -> bool:
        if self.status is not None and fields.status != self.status.value:
            return False
        if self.plugin_id is not None and fields.plugin != self.plugin_id:
            return False
        if self.input_ooi is not None and self.input_ooi.casefold() not in fields.ooi.casefold():
            return False
        return self.filters.empty or self.filters.matches(TaskView(kind, task_id, fields))


class TaskView(Mapping[str, Any]):
    """A stored task as the API shows it, for filter conditions: each column is made when a condition
    asks for it, and the payload is decoded only for conditions on `data`."""

    __slots__ = ("_data", "fields", "kind", "task_id")

    def __init__(self, kind: str, task_id: str, fields: StoredFields) -> None:
        self.kind, self.task_id, self.fields = kind, task_id, fields
        self._data: dict[str, Any] | None = None

    def __getitem__(self, column: str) -> Any:
        f = self.fields
        match column:
            case "id":
                return self.task_id
            case "scheduler_id" | "type":
                return self.kind
            case "schedule_id":
                return f.schedule or None
            case "organisation":
                return f.org
            case "priority":
                return int(f.prio)
            case "status":
                return f.status
            case "hash":
                return f.hash
            case "attempts":
                return int(f.attempts)
            case "created_at":
                return ms_to_datetime(int(f.created))
            case "modified_at":
                return ms_to_datetime(int(f.modified))
            case "data":
                if self._data is None:
                    self._data = {"id": self.task_id, **json.loads(f.data)}
                return self._data
        raise KeyError(column)

    def __iter__(self) -> Iterator[str]:
        return iter(TASK_COLUMNS)

    def __len__(self) -> int:
        return len(TASK_COLUMNS)


@dataclass(frozen=True, slots=True)
class Hit:
    created_ms: int
    task_id: str
    kind: str
    fields: StoredFields | None = None  # read already when the listing checked the record


def list_tasks(context: AppContext, query: TaskQuery) -> tuple[int, list[TaskRecord]]:
    """(matching count, the page of records), newest first."""
    wanted = query.offset + query.limit
    count = 0
    streams: list[list[Hit]] = []
    for kind in query.kinds:
        records = context.queues[kind].records
        organisations = records.organisations() if query.organisations is None else sorted(query.organisations)
        if query.reads_records:
            for organisation in organisations:
                matched = list(_matching(records, organisation, query))
                count += len(matched)
                streams.append(matched)
        else:
            count += records.count_created(organisations, *query.bounds)
            streams.append([Hit(c.created_ms, c.task_id, kind)
                            for c in records.newest_created(organisations, *query.bounds, wanted)])
    newest_first = heapq.merge(*streams, key=lambda hit: (hit.created_ms, hit.task_id), reverse=True)
    page = list(itertools.islice(newest_first, query.offset, wanted))
    return count, _records(context, page)


def _matching(records: TaskRepository, organisation: str, query: TaskQuery) -> Iterator[Hit]:
    """The hits of one organisation's index whose record the query keeps, within SCAN_LIMIT records."""
    for start in range(0, SCAN_LIMIT, CHUNK):
        created = records.created(organisation, *query.bounds, start, min(CHUNK, SCAN_LIMIT - start))
        for entry, fields in zip(created, records.get_fields([c.task_id for c in created]), strict=True):
            if fields is not None and query.keeps(records.kind, entry.task_id, fields):
                yield Hit(entry.created_ms, entry.task_id, records.kind, fields)
        if len(created) < CHUNK:
            return


def _records(context: AppContext, hits: Sequence[Hit]) -> list[TaskRecord]:
    """The records of a page, from the fields read already or in one MGET per kind."""
    unread: dict[str, list[str]] = {}
    for hit in hits:
        if hit.fields is None:
            unread.setdefault(hit.kind, []).append(hit.task_id)
    found = {record.id: record for kind, ids in unread.items()
             for record in context.queues[kind].records.get_many(ids)}
    page = []
    for hit in hits:
        if hit.fields is not None:
            page.append(TaskRecord.from_fields(hit.kind, hit.task_id, hit.fields))
        elif hit.task_id in found:
            page.append(found[hit.task_id])
    return page


# -- stats ----------------------------------------------------------------------------------------

STAT_KEYS = [status.value for status in TaskStatus]


def stats(context: AppContext, kinds: Sequence[str], organisation: str | None) -> dict[str, dict[str, int]]:
    """As OpenKAT's scheduler counts them: tasks changed in the last 24 hours, by the hour of their last
    change and the status they have now; only hours with tasks, the newest first."""
    now_ms = context.clock_ms()
    hours = list(range(_hour_of(now_ms), _hour_of(now_ms - 24 * HOUR_MS) - 1, -HOUR_MS))
    counters = [Counter[str]() for _ in hours]
    for kind in kinds:
        hourly = context.queues[kind].records.hourly_counts(hours, organisation)
        for counter, counts in zip(counters, hourly, strict=True):
            for (status, _), number in counts.items():
                counter[status] += number
    answer: dict[str, dict[str, int]] = {}
    for hour, counter in zip(hours, counters, strict=True):
        by_status = {key: max(0, counter[key]) for key in STAT_KEYS}
        total = sum(by_status.values())
        if total:
            answer[ms_to_datetime(hour).isoformat()] = {**by_status, "total": total}
    return answer


def _hour_of(ms: int) -> int:
    return ms - ms % HOUR_MS
