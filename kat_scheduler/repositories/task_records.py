"""Task records: one Redis hash per task, written by the queue's Lua script and read here.

A record lives in the key space of its queue ("{<prefix>:<kind>}:t:<id>") so that the script can
change a record and the queue in one atomic step. Records of finished tasks expire after the
retention period; `history` lists the ids of the records that still exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from kat_scheduler.models.tasks import Task, TaskStatus

# The order in which the Lua script replies a record's fields (see record_reply in queue.lua).
REPLY_FIELDS = ("org", "hash", "status", "prio", "attempts", "data", "ooi", "plugin", "schedule",
                "created", "modified")


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
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
    def from_reply(cls, kind: str, reply: Sequence[str]) -> TaskRecord:
        """Build from the script's reply: the id, then REPLY_FIELDS in order."""
        return cls.from_fields(kind, reply[0], dict(zip(REPLY_FIELDS, reply[1:], strict=True)))

    @classmethod
    def from_fields(cls, kind: str, task_id: str, fields: Mapping[str, str]) -> TaskRecord:
        return cls(
            id=task_id,
            kind=kind,
            organisation=fields["org"],
            hash=fields["hash"],
            status=TaskStatus(fields["status"]),
            score=int(float(fields["prio"])),
            attempts=int(fields.get("attempts") or 0),
            data=json.loads(fields["data"]),
            ooi=fields.get("ooi", ""),
            plugin_id=fields.get("plugin", ""),
            schedule_id=fields.get("schedule") or None,
            created_ms=int(fields["created"]),
            modified_ms=int(fields["modified"]),
            reason=fields.get("reason", ""),
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
        self.client = client
        self.kind = kind
        self.base = "{" + f"{prefix}:{kind}" + "}"

    def record_key(self, task_id: str) -> str:
        return f"{self.base}:t:{task_id}"

    def get(self, task_id: str) -> TaskRecord | None:
        fields = self.client.hgetall(self.record_key(task_id))
        return TaskRecord.from_fields(self.kind, task_id, fields) if fields else None

    def get_many(self, task_ids: Iterable[str]) -> list[TaskRecord]:
        """Records of the given ids, in that order, skipping those that expired."""
        ids = list(task_ids)
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self.record_key(task_id))
        return [
            TaskRecord.from_fields(self.kind, task_id, fields)
            for task_id, fields in zip(ids, pipe.execute(), strict=True)
            if fields
        ]

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

    def active_task_id(self, identity_hash: str) -> str | None:
        """The queued, dispatched or running task of this work identity, if any."""
        value = self.client.hget(f"{self.base}:active", identity_hash)
        return str(value) if value is not None else None
