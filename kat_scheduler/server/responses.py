"""Answers the hot routes (push, pop, a task's status) render themselves: JSON straight from the stored
records, with no response model to validate again on the way out (docs/api.md, "Speed")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Response

from kat_scheduler.fast_json import dumps as json_bytes
from kat_scheduler.repositories.task_records import TaskRecord

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a route answers, before it is sent: by FastAPI (as_response) or by the hot routes."""

    status: int
    document: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def as_response(answer: Answer) -> Response:
    return Response(json_bytes(answer.document), status_code=answer.status, media_type=JSON,
                    headers=dict(answer.headers))


def json_response(document: Any, status: int = 200) -> Response:
    return as_response(Answer(status, document))


def task_answer(record: TaskRecord, status: int = 200) -> Answer:
    return Answer(status, record.to_document())


def task_response(record: TaskRecord, status: int = 200) -> Response:
    return as_response(task_answer(record, status))


def tasks_answer(records: Iterable[TaskRecord]) -> Answer:
    """A pop's answer: `{"results": [Task, ...]}`."""
    return Answer(200, {"results": [record.to_document() for record in records]})
