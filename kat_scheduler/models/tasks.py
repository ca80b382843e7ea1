"""Task payloads (what runners receive), the task record, and the work identity."""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

import mmh3
from pydantic import BaseModel, ConfigDict, Field

from kat_scheduler.models.inputs import Name, OrganisationId, PluginId, TaskId, Text
from kat_scheduler.models.raw_data import BoefjeRef, RawData


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({TaskStatus.QUEUED, TaskStatus.DISPATCHED, TaskStatus.RUNNING})
FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class _RandomBytes:
    """The operating system's randomness, read 4 KiB at a time: a new task id costs no system call of its
    own (on a busy API that call costs more than the rest of making the id). A forked child starts
    afresh, so that it never hands out its parent's ids."""

    CHUNK = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buffer = b""
        self._lock = threading.Lock()

    def take(self, size: int) -> bytes:
        with self._lock:
            if len(self._buffer) < size:
                self._buffer = os.urandom(self.CHUNK)
            taken, self._buffer = self._buffer[:size], self._buffer[size:]
            return taken


_randomness = _RandomBytes()


def new_task_id() -> str:
    """A random (version 4) UUID."""
    return str(uuid.UUID(bytes=_randomness.take(16), version=4))


def identity_hash(parts: tuple[str | None, ...]) -> str:
    """The work identity's hash: MurmurHash3 x64 128 (as OpenKAT's), 32 hex characters, of the parts
    written as a JSON array. OpenKAT joins the parts with "-", which parts may hold themselves:
    organisation corp's boefje nmap-udp and organisation udp-corp's nmap on one object would be one
    identity. A JSON array cannot be read two ways. Encoding strictly refuses text that is not Unicode
    (UnicodeEncodeError) rather than hand it to the hash function."""
    return mmh3.hash_bytes(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hex()


class NormalizerRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: PluginId
    name: Text | None = None
    version: Text | None = None


class TaskPayload(BaseModel):
    """What a runner receives, for any kind of work (kinds/ declares which model each kind uses).

    Frozen, so that the identity hash is computed once. A kind's model says its work identity (the
    parts that make two tasks the same work), its organisation, its object (if any) and its plugin."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: TaskId = Field(default_factory=new_task_id)

    @property
    def identity(self) -> tuple[str | None, ...]:
        raise NotImplementedError

    @cached_property
    def hash(self) -> str:
        return identity_hash(self.identity)

    # Every kind's model has these three, as fields or properties: the organisation, the Octopoes object
    # the work is on (None for none: its deletion then cancels nothing) and the plugin (for pop filters).
    # Declared for type checkers only, so that pydantic does not take a subclass's field for a shadow.
    if TYPE_CHECKING:
        @property
        def organization(self) -> str: ...

        @property
        def input_ooi(self) -> str | None: ...

        @property
        def plugin_id(self) -> str: ...


class BoefjeTask(TaskPayload):
    """The payload of a boefje task."""

    boefje: BoefjeRef
    input_ooi: Name | None = None
    organization: OrganisationId
    # The tasks of one run for several organisations share it: the first task's id (docs/queue.md, siblings).
    deduplication_key: Name | None = None

    @property
    def identity(self) -> tuple[str | None, ...]:
        """The work: this boefje on this object (or on none) for this organisation."""
        return (self.input_ooi or None, self.boefje.id, self.organization)

    @property
    def plugin_id(self) -> str:
        return self.boefje.id


class NormalizerTask(TaskPayload):
    """The payload of a normalizer task."""

    normalizer: NormalizerRef
    raw_data: RawData

    @property
    def organization(self) -> str:
        return self.raw_data.boefje_meta.organization

    @property
    def input_ooi(self) -> str | None:
        return self.raw_data.boefje_meta.input_ooi

    @property
    def identity(self) -> tuple[str | None, ...]:
        """The work: this normalizer on the output of this boefje run, for this organisation."""
        return (self.normalizer.id, self.raw_data.boefje_meta.id, self.organization)

    @property
    def plugin_id(self) -> str:
        return self.normalizer.id


class Task(BaseModel):
    """A task record as the HTTP API and the CLI show it."""

    id: str
    scheduler_id: str
    schedule_id: str | None = None
    organisation: str
    priority: int
    status: TaskStatus
    type: str
    hash: str
    data: dict[str, Any]
    attempts: int = 0
    created_at: datetime
    modified_at: datetime
