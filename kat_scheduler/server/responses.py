"""Answers the hot routes (push, pop, a task's status) render themselves: JSON straight from the stored
records, with no response model to validate again on the way out (docs/api.md, "Speed")."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi import Response

from kat_scheduler.repositories.task_records import TaskRecord

JSON = "application/json"


def json_response(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, separators=(",", ":")), status_code=status, media_type=JSON)


def task_response(record: TaskRecord, status: int = 200) -> Response:
    return json_response(record.to_document(), status)


def tasks_response(records: Iterable[TaskRecord]) -> Response:
    """A pop's answer: `{"results": [Task, ...]}`."""
    return json_response({"results": [record.to_document() for record in records]})
