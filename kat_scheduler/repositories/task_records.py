"""Task records: one Redis string per task, written by the queue's Lua script and read here.

A record lives in the key space of its queue ("{<prefix>:<kind>}:t:<id>") so that the script can
change a record and the queue in one atomic step. Its value is RECORD_FIELDS joined by SEP, the
payload last (see queue.lua for why a string). Records of finished tasks expire after the retention
period; `history` lists the ids of the records that still exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from kat_scheduler.models.tasks import Task, TaskStatus

SEP = "\x1f"
# The record's fields in stored order; keep in step with the field numbers in queue.lua.
RECORD_FIELDS = ("status", "prio", "seq", "attempts", "created", "modified", "org", "hash", "ooi",
                 "plugin", "schedule", "reason", "data")


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


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

    @classmethod
    def parse(cls, kind: str, task_id: str, stored: str) -> TaskRecord:
        """Build from the stored string."""
        (status, prio, _seq, attempts, created, modified, org, identity, ooi, plugin, schedule, reason,
         data) = stored.split(SEP, len(RECORD_FIELDS) - 1)
        return cls(
            id=task_id,
            kind=kind,
            organisation=org,
            hash=identity,
            status=TaskStatus(status),
            score=int(prio),
            attempts=int(attempts),
            data={"id": task_id, **json.loads(data)},
            ooi=ooi,
            plugin_id=plugin,
            schedule_id=schedule or None,
            created_ms=int(created),
            modified_ms=int(modified),
            reason=reason,
        )

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
        self.client: Any = client
        self.kind = kind
        self.base = "{" + f"{prefix}:{kind}" + "}"

    def record_key(self, task_id: str) -> str:
        return f"{self.base}:t:{task_id}"

    def get(self, task_id: str) -> TaskRecord | None:
        stored = self.client.get(self.record_key(task_id))
        return TaskRecord.parse(self.kind, task_id, stored) if stored else None

    def get_many(self, task_ids: Iterable[str]) -> list[TaskRecord]:
        """Records of the given ids, in that order, skipping those that expired."""
        ids = list(task_ids)
        if not ids:
            return []
        stored = self.client.mget([self.record_key(task_id) for task_id in ids])
        return [TaskRecord.parse(self.kind, task_id, value)
                for task_id, value in zip(ids, stored, strict=True) if value]

    def history(self, offset: int = 0, limit: int = 100, newest_first: bool = True) -> list[TaskRecord]:
        """Records by creation time."""
        rangefn = self.client.zrevrange if newest_first else self.client.zrange
        ids = rangefn(f"{self.base}:history", offset, offset + limit - 1)
        return self.get_many(ids)

    def count(self) -> int:
        return int(self.client.zcard(f"{self.base}:history"))

    def last_run_ms(self, identity_hash: str) -> int | None:
        """When the last finished run of this work identity ended, by our own record."""
        value = self.client.hget(f"{self.base}:lastrun", identity_hash)
        return int(value) if value is not None else None

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
