"""/tasks: the task records, and the status changes a pull runner reports.

A PATCH does what a Celery task event does for a Celery runner: running -> queue.mark_running (and a
fresh lease), completed / failed -> queue.ack. Cancelling takes a queued task off its queue; setting a
popped task back to queued releases it to its place in the queue.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from kat_scheduler.kinds import KINDS
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.models import Task, TaskStatus
from kat_scheduler.queues import Change, Outcome, PriorityQueue
from kat_scheduler.repositories.task_records import TaskRecord
from kat_scheduler.server import filters, task_index
from kat_scheduler.server.bodies import documented as body_doc
from kat_scheduler.server.bodies import optional_json_body, required_body
from kat_scheduler.server.config import MAX_PAGE_SIZE
from kat_scheduler.server.deps import ApiState, State, pull_runner_name
from kat_scheduler.server.errors import ApiError, documented
from kat_scheduler.server.pages import page_links
from kat_scheduler.server.responses import Answer, as_response, json_response, task_answer, task_response
from kat_scheduler.server.schemas import HourStats, TaskPage, TaskPatch, UtcDatetime, UtcDatetimeUntil

logger = logging.getLogger(__name__)
router = APIRouter(tags=["tasks"])
MAX_OFFSET = 10_000  # a listing reads offset + limit entries of each organisation's index


@router.get("/tasks", response_model=TaskPage, responses=documented(),
            openapi_extra=body_doc(filters.FilterRequest, required=False))
@router.post("/tasks", response_model=TaskPage, responses=documented(),
             openapi_extra=body_doc(filters.FilterRequest, required=False))
async def list_tasks(
    request: Request,
    state: State,
    scheduler_id: Annotated[str | None, Query(max_length=200)] = None,
    task_type: Annotated[str | None, Query(max_length=200, description="a kind: boefje, normalizer, report")] = None,
    organisation: Annotated[str | None, Query(max_length=200)] = None,
    status: TaskStatus | None = None,
    min_created_at: UtcDatetime | None = None,
    max_created_at: Annotated[UtcDatetimeUntil | None, Query(description="a time, or a date: up to its end")] = None,
    input_ooi: Annotated[str | None, Query(max_length=1000, description="a part of the object's key")] = None,
    plugin_id: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=0, le=MAX_PAGE_SIZE, description="0: only the count")] = 100,
) -> Response:
    """Tasks newest first. POST (as OpenKAT's web UI lists them) also takes a filter body, whose
    conditions every listed task meets; conditions on the organisation restrict the listing to those
    organisations' tasks (docs/api.md)."""
    if min_created_at and max_created_at and min_created_at > max_created_at:
        raise ApiError(400, "min_created_at is after max_created_at", field="min_created_at")
    conditions = filters.parse(await optional_json_body(request, filters.FilterRequest))
    unknown = {c.path[0] for c in conditions.conditions} - task_index.TASK_COLUMNS
    if unknown:
        raise ApiError(400, f"filters: a task has no column {sorted(unknown)[0]!r}; its columns are "
                       f"{', '.join(sorted(task_index.TASK_COLUMNS))}", field="filters.column")
    organisations, conditions = conditions.split_off("organisation")
    if organisation is not None:
        organisations = frozenset({organisation}) if organisations is None else organisations & {organisation}
    query = task_index.TaskQuery(
        _kinds(state, scheduler_id, task_type), organisations=organisations, status=status,
        min_ms=None if min_created_at is None else int(min_created_at.timestamp() * 1000),
        max_ms=None if max_created_at is None else int(max_created_at.timestamp() * 1000),
        input_ooi=input_ooi, plugin_id=plugin_id, filters=conditions, offset=offset, limit=limit,
    )
    count, records = await run_in_threadpool(task_index.list_tasks, state.context, query)
    previous, following = page_links(request, offset, limit, count)
    return json_response({"count": count, "next": following, "previous": previous,
                          "results": [record.to_document() for record in records]})


def _kinds(state: State, scheduler_id: str | None, task_type: str | None) -> list[str]:
    """The kinds a listing looks at. Like OpenKAT's scheduler, an id that names no scheduler matches no
    task rather than being an error."""
    return [kind for kind in KINDS if scheduler_id in (None, kind) and task_type in (None, kind)]


@router.get("/tasks/stats", response_model=dict[str, HourStats], responses=documented())
def task_stats(
    state: State,
    scheduler_id: Annotated[str | None, Query(max_length=200)] = None,
    organisation_id: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, HourStats]:
    """Tasks changed in the last 24 hours, by the hour of their last change and their status now; only
    hours with tasks, newest first (as OpenKAT's scheduler answers it)."""
    return task_index.stats(state.context, _kinds(state, scheduler_id, None), organisation_id)


@router.get("/tasks/{task_id}", response_model=Task, responses=documented(404))
async def get_task(task_id: str, state: State) -> Response:
    return task_response(_find(state, task_id)[1])


@router.patch("/tasks/{task_id}", response_model=Task, responses=documented(404, 409),
              openapi_extra=body_doc(TaskPatch))
async def patch_task(task_id: str, request: Request, state: State) -> Response:
    """Move a task on: running, completed, failed (a popped task), cancelled (a queued one), queued
    (give a popped task back). Patching to the status a task has already is a no-op (retries are safe);
    running again renews the runner's hold on the task (SCHEDULER_PULL_LEASE_SECONDS)."""
    # Served by the hot routes (hot_routes.py) first; this route documents it and takes what they leave.
    runner = pull_runner_name(request.client.host if request.client else None)
    return as_response(await patch_answer(state, task_id, await request.body(), runner))


async def patch_answer(state: ApiState, task_id: str, raw_body: bytes, runner: str) -> Answer:
    patch = required_body(raw_body, TaskPatch)
    found = await task_index.find_batched(state.context, task_id)
    if found is None:
        raise ApiError(404, f"no task {task_id}")
    queue, record = found
    wanted = patch.status
    if record.status is wanted and wanted is not TaskStatus.RUNNING:
        return task_answer(record)
    reply = await _apply(queue, record, wanted, state.context.settings.pull_lease_seconds, runner)
    if reply in (Change.OK, TaskStatus.CANCELLED):
        logger.info("task %s of organisation %s: %s -> %s", record.id, record.organisation, record.status.value,
                    wanted.value, extra=task_fields(record.id, record.kind, record.organisation))
        changed = await queue.records.get_batched(task_id)
        if changed is not None:
            return task_answer(changed)
        reply = Change.UNKNOWN
    if reply is Change.UNKNOWN:
        raise ApiError(404, f"task {task_id} is gone")
    raise ApiError(409, f"task {task_id} is {reply.value}; it cannot become {wanted.value}" + _hint(reply, wanted))


async def _apply(queue: PriorityQueue, record: TaskRecord, wanted: TaskStatus, lease_seconds: float,
                 runner: str) -> Outcome:
    """The queue operation for a status change; what it came to: OK, CANCELLED, or the blocking status."""
    match wanted:
        case TaskStatus.RUNNING:
            return await queue.mark_running_batched(record.id, lease_seconds=lease_seconds, runner=runner)
        case TaskStatus.COMPLETED | TaskStatus.FAILED:
            return await queue.ack_batched(record.id, failed=wanted is TaskStatus.FAILED)
        case TaskStatus.CANCELLED:
            return queue.cancel(record.id)[0]
        case TaskStatus.QUEUED:
            return await queue.release_batched(record.id)
    raise ApiError(400, f"status {wanted.value!r} cannot be set through the API; use running, completed, "
                   "failed, cancelled or queued", field="status")


def _hint(current: Outcome, wanted: TaskStatus) -> str:
    if current == TaskStatus.QUEUED and wanted is not TaskStatus.CANCELLED:
        return " (pop it first)"
    if wanted is TaskStatus.CANCELLED:
        return " (only queued tasks can be cancelled)"
    return ""


def _find(state: State, task_id: str) -> tuple[PriorityQueue, TaskRecord]:
    found = task_index.find(state.context, task_id)
    if found is None:
        raise ApiError(404, f"no task {task_id}")
    return found

