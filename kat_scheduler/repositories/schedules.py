"""Schedules: recurring work, one per work identity, kept in Redis.

A schedule says "run this task again at `deadline_at`". The beat takes due schedules in deadline order
(`due`), checks them, queues their task and moves the deadline on (`save`). Changes that touch
several keys go through schedules.lua, so beats, workers and API replicas can share the store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from pydantic import ValidationError

from kat_scheduler.models.inputs import first_problem
from kat_scheduler.models.schedule import Schedule
from kat_scheduler.queues.lua_library import LuaLibrary
from kat_scheduler.repositories.task_records import SEP
from kat_scheduler.store import StoreClient

logger = logging.getLogger(__name__)

SCHEDULES_LUA = Path(__file__).parent / "schedules.lua"


class DuplicateSchedule(Exception):
    """Another schedule already holds this work identity."""

    def __init__(self, holder_id: str) -> None:
        super().__init__(f"a schedule for this work already exists: {holder_id}")
        self.holder_id = holder_id


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ooi_of(data: dict[str, Any]) -> str:
    """The OOI a schedule's task is about, for the per-OOI index ("" when none)."""
    return str(data.get("input_ooi") or "")


class ScheduleRepository:
    """The schedules of one scheduler (kind)."""

    def __init__(self, client: redis.Redis, prefix: str, kind: str) -> None:
        # Replies are str (decode_responses=True); redis-py's annotations cannot say so.
        self.client: Any = StoreClient(client, f"schedules {kind}")
        self.kind = kind
        self.base = "{" + f"{prefix}:schedules:{kind}" + "}"
        self._lua = LuaLibrary(self.client, SCHEDULES_LUA)

    def _key(self, schedule_id: str) -> str:
        return f"{self.base}:s:{schedule_id}"

    def build(
        self,
        organisation: str,
        data: dict[str, Any],
        identity_hash: str,
        *,
        cron: str | None = None,
        deadline_at: datetime | None = None,
        enabled: bool = True,
        now: datetime | None = None,
        person_set: Iterable[str] = (),
    ) -> Schedule:
        """A new schedule of this store's kind, not yet stored. Built without validation: the schedulers
        build one per queued task, from values of their own (the HTTP API validates its input first)."""
        now = now or datetime.now(UTC)
        return Schedule.model_construct(
            id=str(uuid.uuid4()), scheduler_id=self.kind, organisation=organisation, hash=identity_hash,
            data=data, enabled=enabled, schedule=cron, deadline_at=deadline_at, created_at=now, modified_at=now,
            person_set=sorted(set(person_set)),
        )

    def new(self, organisation: str, data: dict[str, Any], identity_hash: str, **options: Any) -> Schedule:
        """Build (options as for `build`) and store a schedule; DuplicateSchedule when its identity has one."""
        schedule = self.build(organisation, data, identity_hash, **options)
        self.save(schedule, previous_hash="")
        return schedule

    def save(self, schedule: Schedule, previous_hash: str | None = None) -> None:
        """Store a changed schedule (previous_hash: its identity before the change; "" for a new one)."""
        [reply] = self._lua([self.base], ["put", _put_item(schedule, previous_hash)])
        _check(reply)

    def save_many(self, schedules: Iterable[Schedule], *, new: bool = False) -> list[str]:
        """Store many schedules in one script call (one round trip, atomic as a whole): changed ones, or with
        new=True new ones, skipping those whose identity has a schedule already. Returns the ids of
        the identities' holders that kept them from being stored."""
        args = ["put", *(_put_item(schedule, "" if new else None) for schedule in schedules)]
        if len(args) == 1:
            return []
        held_by = []
        for reply in self._lua([self.base], args):
            if new and reply.startswith("duplicate:"):
                held_by.append(reply.split(":", 1)[1])
            else:
                _check(reply)
        return held_by

    def get_many_by_hash(self, identity_hashes: list[str]) -> dict[str, Schedule]:
        """The schedules of those work identities that have one, by identity."""
        if not identity_hashes:
            return {}
        ids = self.client.hmget(f"{self.base}:hash", identity_hashes)
        return {s.hash: s for s in self.get_many(i for i in ids if i)}

    def delete(self, schedule: Schedule) -> bool:
        """Remove a schedule; False when it was gone already."""
        return self.delete_many([schedule]) == 1

    def delete_many(self, schedules: Iterable[Schedule]) -> int:
        """Remove schedules in one call; how many were still there."""
        args = ["delete"]
        for schedule in schedules:
            args += [schedule.id, schedule.hash, schedule.organisation, ooi_of(schedule.data)]
        if len(args) == 1:
            return 0
        return sum(reply == "ok" for reply in self._lua([self.base], args))

    def get(self, schedule_id: str) -> Schedule | None:
        return _read(schedule_id, self.client.get(self._key(schedule_id)))

    def get_many(self, schedule_ids: Iterable[str]) -> list[Schedule]:
        ids = list(schedule_ids)
        if not ids:
            return []
        stored = self.client.mget([self._key(i) for i in ids])
        return [schedule for i, s in zip(ids, stored, strict=True) if (schedule := _read(i, s)) is not None]

    def get_by_hash(self, identity_hash: str) -> Schedule | None:
        schedule_id = self.client.hget(f"{self.base}:hash", identity_hash)
        return self.get(schedule_id) if schedule_id else None

    def due(self, now_ms: int, limit: int) -> list[Schedule]:
        """Enabled schedules whose deadline has passed, earliest first."""
        ids = self.client.zrangebyscore(f"{self.base}:due", "-inf", now_ms, start=0, num=limit)
        return self.get_many(ids)

    def due_count(self, now_ms: int) -> int:
        return int(self.client.zcount(f"{self.base}:due", "-inf", now_ms))

    def of_ooi(self, organisation: str, ooi: str) -> list[Schedule]:
        return self.get_many(self.client.smembers(f"{self.base}:ooi:{organisation}:{ooi}"))

    def list(self, offset: int = 0, limit: int = 100) -> list[Schedule]:
        """Schedules by creation time, newest first."""
        return self.get_many(self.client.zrevrange(f"{self.base}:all", offset, offset + limit - 1))

    def count(self) -> int:
        return int(self.client.zcard(f"{self.base}:all"))


def _read(schedule_id: str, stored: str | None) -> Schedule | None:
    """A stored schedule, or None. One that cannot be read (stored before today's input checks) is left
    out with a log line, so that it cannot break the listings of every organisation."""
    if not stored:
        return None
    try:
        return Schedule.model_validate_json(stored)
    except ValidationError as error:
        logger.error("schedule %s cannot be read and is left out: %s", schedule_id, first_problem(error))
        return None


def _put_item(schedule: Schedule, previous_hash: str | None) -> str:
    """One schedule for schedules.lua's put: its index fields and its JSON, joined by SEP."""
    ooi = ooi_of(schedule.data)
    if SEP in schedule.organisation or SEP in ooi:
        raise ValueError("an organisation or OOI must not contain the unit separator (0x1f)")
    deadline = "" if schedule.deadline_at is None else str(to_ms(schedule.deadline_at))
    return SEP.join((schedule.id, schedule.hash, schedule.hash if previous_hash is None else previous_hash,
                     schedule.organisation, ooi, deadline, "1" if schedule.enabled else "0",
                     str(to_ms(schedule.created_at)), schedule.model_dump_json()))


def _check(reply: str) -> None:
    if reply.startswith("duplicate:"):
        raise DuplicateSchedule(reply.split(":", 1)[1])
    if reply != "ok":
        raise KeyError(f"schedule store: {reply}")
