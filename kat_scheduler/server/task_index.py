"""Reading task records for the API: one task by id, filtered pages of the history, hourly stats.

The queue keeps, per kind, a sorted set of task ids by creation time (`P:history`) and one record per
task. Filters on the time window and the kind use the sorted set alone; filters on organisation or
status read the records, newest first, at most SCAN_LIMIT per kind per request, so one listing never
holds Redis or the API for long. Beyond that window the count is a lower bound (docs/api.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kat_scheduler.context.context import AppContext
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories.task_records import RECORD_FIELDS, SEP, TaskRecord

SCAN_LIMIT = 20_000  # records read per kind for one filtered listing
CHUNK = 1000  # records per MGET
STATUS_FIELD = RECORD_FIELDS.index("status")
ORG_FIELD = RECORD_FIELDS.index("org")
HOUR_MS = 3_600_000


def find(context: AppContext, task_id: str) -> tuple[PriorityQueue, TaskRecord] | None:
    """The task with this id, whichever queue holds it."""
    for queue in context.queues.values():
        record = queue.records.get(task_id)
        if record is not None:
            return queue, record
    return None


@dataclass(frozen=True, slots=True)
class TaskQuery:
    kinds: Sequence[str]
    organisation: str | None = None
    status: TaskStatus | None = None
    min_ms: int | None = None
    max_ms: int | None = None
    offset: int = 0
    limit: int = 100

    @property
    def reads_records(self) -> bool:
        return self.organisation is not None or self.status is not None


@dataclass(frozen=True, slots=True)
class TaskHit:
    created_ms: int
    kind: str
    task_id: str


def list_tasks(context: AppContext, query: TaskQuery) -> tuple[int, list[TaskRecord]]:
    """(matching count, the page of records), newest first."""
    hits: list[TaskHit] = []
    count = 0
    for kind in query.kinds:
        queue = context.queues[kind]
        if query.reads_records:
            matched = list(_matching(queue, query))
            count += len(matched)
            hits += matched
        else:
            count += _count_window(queue, query)
            hits += _window(queue, query, 0, query.offset + query.limit)
    hits.sort(key=lambda hit: (hit.created_ms, hit.task_id), reverse=True)
    page = hits[query.offset:query.offset + query.limit]
    return count, _records(context, page)


def _bounds(query: TaskQuery) -> tuple[str, str]:
    low = "-inf" if query.min_ms is None else str(query.min_ms)
    high = "+inf" if query.max_ms is None else str(query.max_ms)
    return low, high


def _count_window(queue: PriorityQueue, query: TaskQuery) -> int:
    low, high = _bounds(query)
    return int(queue.client.zcount(f"{queue.base}:history", low, high))


def _window(queue: PriorityQueue, query: TaskQuery, start: int, num: int) -> list[TaskHit]:
    low, high = _bounds(query)
    pairs = queue.client.zrevrangebyscore(f"{queue.base}:history", high, low, start=start, num=num,
                                          withscores=True)
    return [TaskHit(int(score), queue.kind, task_id) for task_id, score in pairs]


def _matching(queue: PriorityQueue, query: TaskQuery) -> Iterator[TaskHit]:
    """The hits whose record has the organisation and status asked for, within SCAN_LIMIT records."""
    for start in range(0, SCAN_LIMIT, CHUNK):
        hits = _window(queue, query, start, min(CHUNK, SCAN_LIMIT - start))
        for hit, fields in zip(hits, _fields(queue, hits), strict=True):
            if fields is None:
                continue
            if query.status is not None and fields[STATUS_FIELD] != query.status.value:
                continue
            if query.organisation is not None and fields[ORG_FIELD] != query.organisation:
                continue
            yield hit
        if len(hits) < CHUNK:
            return


def _fields(queue: PriorityQueue, hits: Sequence[TaskHit]) -> list[list[str] | None]:
    """The leading fields of each hit's record (None when it expired), without decoding payloads."""
    if not hits:
        return []
    stored = queue.client.mget([queue.records.record_key(hit.task_id) for hit in hits])
    return [value.split(SEP, ORG_FIELD + 1) if value else None for value in stored]


def _records(context: AppContext, hits: Sequence[TaskHit]) -> list[TaskRecord]:
    by_kind: dict[str, list[str]] = {}
    for hit in hits:
        by_kind.setdefault(hit.kind, []).append(hit.task_id)
    found = {record.id: record for kind, ids in by_kind.items()
             for record in context.queues[kind].records.get_many(ids)}
    return [found[hit.task_id] for hit in hits if hit.task_id in found]


# -- stats ----------------------------------------------------------------------------------------

STAT_KEYS = [status.value for status in TaskStatus]


def hour_of(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // HOUR_MS * HOUR_MS / 1000, tz=UTC)


def stats(context: AppContext, kinds: Sequence[str], organisation: str | None) -> dict[str, dict[str, int]]:
    """Per hour of creation, over the 24 hours ending with the current one: tasks by status and in total."""
    now_ms = context.clock_ms()
    first_hour = hour_of(now_ms) - timedelta(hours=23)
    start_ms = int(first_hour.timestamp() * 1000)
    counters = {first_hour + timedelta(hours=n): Counter[str]() for n in range(24)}
    query = TaskQuery(kinds, organisation=organisation, min_ms=start_ms, max_ms=now_ms)
    for kind in kinds:
        queue = context.queues[kind]
        start = 0
        while True:
            hits = _window(queue, query, start, CHUNK)
            for hit, fields in zip(hits, _fields(queue, hits), strict=True):
                if fields is None or (organisation is not None and fields[ORG_FIELD] != organisation):
                    continue
                counter = counters.get(hour_of(hit.created_ms))
                if counter is not None:
                    counter[fields[STATUS_FIELD]] += 1
            if len(hits) < CHUNK:
                break
            start += CHUNK
    return {hour.isoformat(): {**{key: counter[key] for key in STAT_KEYS}, "total": sum(counter.values())}
            for hour, counter in counters.items()}
