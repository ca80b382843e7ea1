"""Task records: one Redis string per task, written by the queue's Lua script and read here.

A record lives in the key space of its queue ("{<prefix>:<kind>}:t:<id>") so that the script can
change a record and the queue in one atomic step. Its value is RECORD_FIELDS joined by SEP, the
payload last (see queue.lua for why a string). Records of finished tasks expire after the retention
period. Each organisation's tasks are indexed by creation time (`created`), for listings; the queue's
script also keeps hourly counters of statuses (`hourly_counts`). This module is the only reader of
those keys.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis

from kat_scheduler import fast_json
from kat_scheduler.loop_pipe import pipes_of
from kat_scheduler.models.tasks import Task, TaskStatus
from kat_scheduler.store import StoreClient

SEP = "\x1f"
# The record's fields in stored order; keep in step with the field numbers in queue.lua.
RECORD_FIELDS = ("status", "prio", "seq", "attempts", "created", "modified", "org", "hash", "ooi",
                 "plugin", "schedule", "reason", "expired", "history", "data")
STATUS_FIELD, ORG_FIELD, HISTORY_FIELD = (RECORD_FIELDS.index(name) for name in ("status", "org", "history"))

HOUR_MS = 3_600_000
STATUS_OF = {status.value: status for status in TaskStatus}  # a dict lookup costs a tenth of TaskStatus(value)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ms_to_iso(ms: int) -> str:
    """As pydantic writes a UTC time in JSON: ISO 8601 with a Z."""
    return ms_to_datetime(ms).isoformat().replace("+00:00", "Z")


class StoredFields(NamedTuple):
    """A record split into its stored fields, the payload still JSON text: cheap to filter on."""

    status: str
    prio: str
    seq: str
    attempts: str
    created: str
    modified: str
    org: str
    hash: str
    ooi: str
    plugin: str
    schedule: str
    reason: str
    expired: str
    history: str
    data: str

    @classmethod
    def split(cls, stored: str) -> StoredFields:
        return cls._make(stored_parts(stored))


def stored_parts(stored: str) -> list[str]:
    """A record's fields in RECORD_FIELDS order (StoredFields without the names)."""
    parts = stored.split(SEP, len(RECORD_FIELDS) - 1)
    if len(parts) == len(RECORD_FIELDS) - 1:  # written before the history field existed
        parts.insert(HISTORY_FIELD, "")
    return parts


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of a task's history: when it got a status, and why or by whom when the queue knows."""

    at_ms: int
    status: str
    note: str = ""

    @classmethod
    def parse_all(cls, created_ms: int, history: str) -> list[StatusChange]:
        """The push (the record's creation), then each change queue.lua noted."""
        changes = [cls(created_ms, TaskStatus.QUEUED.value, "pushed")]
        for entry in filter(None, history.split(";")):
            at, _, rest = entry.partition(",")
            status, _, note = rest.partition(",")
            changes.append(cls(int(at), status, note))
        return changes


@dataclass(frozen=True, slots=True)
class Created:
    """One entry of a creation index: a task id and when it was created."""

    task_id: str
    created_ms: int


@dataclass(slots=True)
class TaskRecord:
    """A task as stored: plain data, cheap to build on the claim path."""

    id: str
    kind: str
    organisation: str
    hash: str
    status: TaskStatus
    score: int
    attempts: int
    data: dict[str, Any]
    ooi: str
    plugin_id: str
    schedule_id: str | None
    created_ms: int
    modified_ms: int
    reason: str = ""
    expired_leases: int = 0  # leases that ran out: SCHEDULER_MAX_ATTEMPTS of them make a dead letter
    history_text: str = ""  # the status changes after the push, as stored: read them with history()
    sibling_of: str | None = None  # in a claim's answer: the task it was claimed with (one run for both)

    @classmethod
    def parse(cls, kind: str, task_id: str, stored: str) -> TaskRecord:
        """Build from the stored string."""
        return cls.from_fields(kind, task_id, stored_parts(stored))

    @classmethod
    def from_fields(cls, kind: str, task_id: str, fields: Sequence[str]) -> TaskRecord:
        """From the stored fields (StoredFields, or stored_parts' list). Positional, in the order of the
        fields above: a claim builds one for every task it takes."""
        status, prio, _, attempts, created, modified, org, hash_, ooi, plugin, schedule, reason, expired, history, \
            data = fields
        return cls(task_id, kind, org, hash_, STATUS_OF[status], int(prio), int(attempts),
                   {"id": task_id, **fast_json.loads(data)}, ooi, plugin, schedule or None, int(created),
                   int(modified), reason, int(expired), history)

    def history(self) -> list[StatusChange]:
        return StatusChange.parse_all(self.created_ms, self.history_text)

    @property
    def runner(self) -> str | None:
        """Who ran it, when the queue was told: the runner named when it started, else how it was handed
        out ("forwarded" by a dispatcher, "pulled" through the API)."""
        for change in reversed(self.history()):
            if change.status in (TaskStatus.RUNNING.value, TaskStatus.DISPATCHED.value) and change.note:
                return change.note
        return None

    def to_document(self) -> dict[str, Any]:
        """The record as the HTTP API answers it: `to_task()` as JSON-ready plain data, made without a
        model (the hot routes answer many of these)."""
        return {"id": self.id, "scheduler_id": self.kind, "schedule_id": self.schedule_id,
                "organisation": self.organisation, "priority": self.score, "status": self.status.value,
                "type": self.kind, "hash": self.hash, "data": self.data, "attempts": self.attempts,
                "created_at": ms_to_iso(self.created_ms), "modified_at": ms_to_iso(self.modified_ms)}

    def to_task(self) -> Task:
        """The record in the shape the HTTP API and the CLI show."""
        return Task(
            id=self.id,
            scheduler_id=self.kind,
            schedule_id=self.schedule_id,
            organisation=self.organisation,
            priority=self.score,
            status=self.status,
            type=self.kind,
            hash=self.hash,
            data=self.data,
            attempts=self.attempts,
            created_at=ms_to_datetime(self.created_ms),
            modified_at=ms_to_datetime(self.modified_ms),
        )


class TaskRepository:
    """Reads the task records and last-run times of one queue."""

    def __init__(self, client: redis.Redis, prefix: str, kind: str) -> None:
        # Replies are str (decode_responses=True); redis-py's annotations cannot say so.
        self.client: Any = StoreClient(client, f"records {kind}")
        self.kind = kind
        self.base = "{" + f"{prefix}:{kind}" + "}"

    def record_key(self, task_id: str) -> str:
        return f"{self.base}:t:{task_id}"

    def get(self, task_id: str) -> TaskRecord | None:
        stored = self.client.get(self.record_key(task_id))
        return TaskRecord.parse(self.kind, task_id, stored) if stored else None

    async def get_batched(self, task_id: str) -> TaskRecord | None:
        """get, from a coroutine: on the event loop's connection (loop_pipe.py) when the client has one."""
        key = self.record_key(task_id)
        stored = await pipes_of(self.client.raw).call(("GET", key), lambda: self.client.get(key))
        return TaskRecord.parse(self.kind, task_id, stored) if stored else None

    def exists(self, task_id: str) -> bool:
        return bool(self.client.exists(self.record_key(task_id)))

    def statuses(self, task_ids: Iterable[str]) -> list[tuple[str, TaskStatus]]:
        """(organisation, status) of the given tasks that still have records: for counting, without
        parsing the payloads."""
        ids = list(task_ids)
        stored = self.client.mget([self.record_key(task_id) for task_id in ids]) if ids else []
        parts = [value.split(SEP, ORG_FIELD + 1) for value in stored if value]
        return [(fields[ORG_FIELD], TaskStatus(fields[STATUS_FIELD])) for fields in parts]

    def get_many(self, task_ids: Iterable[str]) -> list[TaskRecord]:
        """Records of the given ids, in that order, skipping those that expired."""
        ids = list(task_ids)
        if not ids:
            return []
        stored = self.client.mget([self.record_key(task_id) for task_id in ids])
        return [TaskRecord.parse(self.kind, task_id, value)
                for task_id, value in zip(ids, stored, strict=True) if value]

    def get_fields(self, task_ids: Sequence[str]) -> list[StoredFields | None]:
        """The stored fields of each id (None where the record expired), the payloads left undecoded."""
        if not task_ids:
            return []
        stored = self.client.mget([self.record_key(task_id) for task_id in task_ids])
        return [StoredFields.split(value) if value else None for value in stored]

    # -- the creation indexes: each organisation's tasks by creation (queue.lua's P:h:<org>) ------

    def _created_key(self, organisation: str) -> str:
        return f"{self.base}:h:{organisation}"

    def organisations(self) -> list[str]:
        """The organisations that have tasks in the records."""
        return sorted(self.client.smembers(f"{self.base}:h"))

    def count_created(self, organisations: Iterable[str], low: str = "-inf", high: str = "+inf") -> int:
        """Tasks of these organisations created between `low` and `high` (ms, or "-inf" / "+inf")."""
        pipe = self.client.pipeline(transaction=False)
        for organisation in organisations:
            pipe.zcount(self._created_key(organisation), low, high)
        return sum(int(n) for n in pipe.execute())

    def created(self, organisation: str, low: str, high: str, start: int, num: int) -> list[Created]:
        """One organisation's tasks created between `low` and `high`, newest first, from the `start`th on."""
        pairs = self.client.zrevrangebyscore(self._created_key(organisation), high, low, start=start, num=num,
                                             withscores=True)
        return [Created(task_id, int(score)) for task_id, score in pairs]

    def newest_created(self, organisations: Iterable[str], low: str, high: str, num: int) -> list[Created]:
        """The `num` newest tasks of these organisations created between `low` and `high`, newest first."""
        pipe = self.client.pipeline(transaction=False)
        for organisation in organisations:
            pipe.zrevrangebyscore(self._created_key(organisation), high, low, start=0, num=num, withscores=True)
        streams = [[Created(task_id, int(score)) for task_id, score in pairs] for pairs in pipe.execute()]
        merged = heapq.merge(*streams, key=lambda c: (c.created_ms, c.task_id), reverse=True)
        return list(itertools.islice(merged, num))

    def history(self, offset: int = 0, limit: int = 100) -> list[TaskRecord]:
        """Records of every organisation, newest first."""
        created = self.newest_created(self.organisations(), "-inf", "+inf", offset + limit)[offset:]
        return self.get_many(c.task_id for c in created)

    def task_ids(self) -> list[str]:
        """The ids of every task in the records, oldest first."""
        pipe = self.client.pipeline(transaction=False)
        for organisation in self.organisations():
            pipe.zrange(self._created_key(organisation), 0, -1, withscores=True)
        every = [Created(task_id, int(score)) for pairs in pipe.execute() for task_id, score in pairs]
        return [c.task_id for c in sorted(every, key=lambda c: (c.created_ms, c.task_id))]

    def count(self) -> int:
        return self.count_created(self.organisations())

    def newest_created_ms(self) -> int | None:
        newest = self.newest_created(self.organisations(), "-inf", "+inf", 1)
        return newest[0].created_ms if newest else None

    # -- the hourly counters of statuses (queue.lua's P:hour:<ms>:<org>) --------------------------

    def hourly_counts(self, hours: Sequence[int], organisation: str | None = None) -> list[dict[tuple[str, str], int]]:
        """For each hour (its first ms): (status, organisation) -> tasks last changed then that have
        that status now; of one organisation (one round trip), or of all (two: which organisations, then
        their counters). Counters written before they were kept per organisation, one hash per hour of
        "<status>:<org>" fields, are read too until they expire."""
        if organisation is None:
            pipe = self.client.pipeline(transaction=False)
            for hour in hours:
                pipe.smembers(f"{self.base}:hour_orgs:{hour}")
            orgs_of_hours: list[list[str]] = [sorted(orgs) for orgs in pipe.execute()]
        else:
            orgs_of_hours = [[organisation] for _ in hours]
        pipe = self.client.pipeline(transaction=False)
        for hour, orgs in zip(hours, orgs_of_hours, strict=True):
            pipe.hgetall(f"{self.base}:hour:{hour}")  # the earlier layout
            for org in orgs:
                pipe.hgetall(f"{self.base}:hour:{hour}:{org}")
        replies = iter(pipe.execute())
        result: list[dict[tuple[str, str], int]] = []
        for orgs in orgs_of_hours:
            counts: dict[tuple[str, str], int] = {}
            for field, value in next(replies).items():
                status, _, org = field.partition(":")
                if organisation is None or org == organisation:
                    counts[status, org] = int(value)
            for org in orgs:
                for status, value in next(replies).items():
                    counts[status, org] = counts.get((status, org), 0) + int(value)
            result.append(counts)
        return result

    def last_run_ms(self, identity_hash: str) -> int | None:
        """When the last finished run of this work identity ended, by our own record."""
        value = self.client.hget(f"{self.base}:lastrun", identity_hash)
        return int(value) if value is not None else None

    def last_runs_ms(self, identity_hashes: Sequence[str]) -> list[int | None]:
        """last_run_ms of each, in one read."""
        if not identity_hashes:
            return []
        values = self.client.hmget(f"{self.base}:lastrun", list(identity_hashes))
        return [int(value) if value is not None else None for value in values]

    def forget_last_runs(self, identity_hashes: Iterable[str]) -> int:
        """Drop the last runs of these work identities (their object is gone); how many there were."""
        hashes = list(identity_hashes)
        return int(self.client.hdel(f"{self.base}:lastrun", *hashes)) if hashes else 0

    def activity(self, works: Iterable[tuple[str, str | None, str]],
                 known: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
                 ) -> list[tuple[str | None, int | None]]:
        """For each (organisation, OOI, identity hash): its active task id and the end of its last
        finished run, in one round trip (one HMGET per object, one for all last runs). `known`: the
        active tasks of objects the caller read already (active_by_ooi), by (organisation, OOI); those
        are not read again."""
        works = list(works)
        if not works:
            return []
        known = known or {}
        by_object: dict[tuple[str, str], list[int]] = {}
        for index, (organisation, ooi, _) in enumerate(works):
            by_object.setdefault((organisation, ooi or ""), []).append(index)
        unread = [key for key in by_object if key not in known]
        pipe = self.client.pipeline(transaction=False)
        for organisation, ooi in unread:
            pipe.hmget(self.group_key(organisation, ooi), [works[i][2] for i in by_object[organisation, ooi]])
        pipe.hmget(f"{self.base}:lastrun", [identity for _, _, identity in works])
        *read, last_runs = pipe.execute()
        active_of = dict(zip(unread, read, strict=True))
        active: list[str | None] = [None] * len(works)
        for key, indexes in by_object.items():
            for position, index in enumerate(indexes):
                active[index] = known[key].get(works[index][2]) if key in known else active_of[key][position]
        return [(task_id, int(last) if last is not None else None)
                for task_id, last in zip(active, last_runs, strict=True)]

    def group_key(self, organisation: str, ooi: str | None) -> str:
        """The key of an object's active tasks: identity hash -> task id (queue.lua's P:a:<org>:<ooi>)."""
        return f"{self.base}:a:{organisation}:{ooi or ''}"

    def active_by_ooi(self, organisation: str, oois: list[str]) -> dict[str, dict[str, str]]:
        """The queued, dispatched and running tasks of each of an organisation's OOIs, as
        {identity hash: task id}, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for ooi in oois:
            pipe.hgetall(self.group_key(organisation, ooi))
        return dict(zip(oois, pipe.execute(), strict=True))

    def active_task_id(self, organisation: str, ooi: str | None, identity_hash: str) -> str | None:
        """The queued, dispatched or running task of this work identity, if any."""
        value = self.client.hget(self.group_key(organisation, ooi), identity_hash)
        return str(value) if value is not None else None
