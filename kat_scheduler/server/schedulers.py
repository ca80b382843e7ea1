"""/schedulers: the queue of each kind of work ("boefje", "normalizer", "report") as OpenKAT's
schedulers, and pushing to and popping from them."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from kat_scheduler.kinds import KINDS
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.models import FINAL_STATUSES, Task, TaskStatus, new_task_id
from kat_scheduler.models.inputs import UnfitInput, canonical_task_id
from kat_scheduler.queues import PriorityQueue, PushOutcome
from kat_scheduler.repositories.task_records import TaskRecord, ms_to_datetime
from kat_scheduler.server import filters
from kat_scheduler.server.bodies import documented as body_doc
from kat_scheduler.server.bodies import parsed_body, required_body
from kat_scheduler.server.config import MAX_PAGE_SIZE
from kat_scheduler.server.deps import ApiState, State, pull_runner_name, queue_of
from kat_scheduler.server.errors import ApiError, documented
from kat_scheduler.server.oci_images import plugins_by_image
from kat_scheduler.server.priority import score_for
from kat_scheduler.server.responses import Answer, as_response, task_answer, tasks_answer
from kat_scheduler.server.schemas import PopResponse, PushRequest, QueueOut, SchedulerOut

logger = logging.getLogger(__name__)
router = APIRouter(tags=["schedulers"])
FULL_RETRY_AFTER_SECONDS = 10


def describe(queue: PriorityQueue) -> SchedulerOut:
    newest = queue.records.newest_created_ms()
    return SchedulerOut(id=queue.kind, type=queue.kind, item_type=queue.payload_model.__name__,
                        qsize=queue.size(), last_activity=None if newest is None else ms_to_datetime(newest))


@router.get("/schedulers", response_model=list[SchedulerOut], responses=documented())
def list_schedulers(state: State) -> list[SchedulerOut]:
    return [describe(state.context.queues[kind]) for kind in KINDS]


@router.get("/queues", response_model=list[QueueOut], responses=documented())
def list_queues(state: State) -> list[QueueOut]:
    """The schedulers' queues and their sizes (what OpenKAT's web UI client asks as get_queues)."""
    return [QueueOut(id=kind, size=state.context.queues[kind].size()) for kind in KINDS]


@router.get("/schedulers/{scheduler_id}", response_model=SchedulerOut, responses=documented(404))
def get_scheduler(scheduler_id: str, state: State) -> SchedulerOut:
    return describe(queue_of(state, scheduler_id))


GIVEN_BACK: dict[int | str, dict[str, Any]] = {200: {"model": Task, "description": "a popped task given back"}}


@router.post("/schedulers/{scheduler_id}/push", status_code=201, response_model=Task,
             openapi_extra=body_doc(PushRequest), responses={**documented(404, 409, 429), **GIVEN_BACK})
async def push(scheduler_id: str, request: Request, state: State) -> Response:
    """Queue one task (201). 409 (with Retry-After) when its work identity is queued, dispatched or
    running already. A runner that pushes back a task it popped and did not run (the whole Task, as
    OpenKAT's runners do when they stop) gives it back: 200, and the task is in its place in the queue."""
    # Served by the hot routes (hot_routes.py) first; this route documents it and takes what they leave.
    return as_response(await push_answer(state, scheduler_id, await request.body()))


async def push_answer(state: ApiState, scheduler_id: str, raw_body: bytes) -> Answer:
    queue = queue_of(state, scheduler_id)
    body = required_body(raw_body, PushRequest)
    if body.scheduler_id is not None and body.scheduler_id != scheduler_id:
        raise ApiError(400, f"scheduler_id {body.scheduler_id!r} differs from the scheduler pushed to, "
                       f"{scheduler_id!r}", field="scheduler_id")
    data = _payload_data(body)
    payload = queue.validate(data)
    if body.data.get("id") is not None or body.id is not None:
        _refuse_id_of_another_queue(state, queue, payload.id)
    if payload.organization != body.organisation:
        raise ApiError(400, f"organisation {body.organisation!r} differs from the payload's organization "
                       f"{payload.organization!r}", field="organisation")
    score = score_for(queue, body.priority, payload.hash, state.context.clock_ms(),
                      state.context.settings.grace_period)
    result = await queue.push_batched(payload, score, data=data)
    if result.record is not None:
        logger.info("task %s of organisation %s pushed to %s (priority %s, score %d)",
                    payload.id, payload.organization, queue.kind, body.priority, score,
                    extra=task_fields(payload.id, queue.kind, payload.organization))
        return task_answer(result.record, 201)
    if result.outcome is PushOutcome.FULL:
        raise ApiError(429, f"the {queue.kind} queue is full ({queue.maxsize} tasks)",
                       headers={"Retry-After": str(FULL_RETRY_AFTER_SECONDS)})
    if result.outcome is PushOutcome.DUPLICATE and result.task_id == payload.id:
        return task_answer(_given_back(queue, payload.id, payload.organization, result.holder_status))
    if result.outcome is PushOutcome.ID_TAKEN:
        raise ApiError(409, _why_taken(queue, payload.id, payload.organization), field="id")
    logger.info("task %s of organisation %s refused: its work is %s as task %s",
                payload.id, payload.organization, result.holder_status, result.task_id,
                extra=task_fields(payload.id, queue.kind, payload.organization))
    raise ApiError(409, f"this work is {result.holder_status} already as task {result.task_id}",
                   headers={"Retry-After": str(math.ceil(queue.lease_ms / 1000))})


def _payload_data(body: PushRequest) -> dict[str, Any]:
    """body.data with the task id settled: body.id and data.id must agree; either may be left out or
    null (a new id is made when both are)."""
    data = dict(body.data)
    given = data.get("id")
    if given is not None:
        try:
            data_id = canonical_task_id(given)
        except UnfitInput:
            raise ApiError(400, "data.id: must be a UUID", field="data.id") from None
        if body.id is not None and str(body.id) != data_id:
            raise ApiError(400, "id and data.id differ; a runner relies on them being equal", field="id")
        data["id"] = data_id
    else:
        data["id"] = str(body.id) if body.id is not None else new_task_id()
    return data


def _refuse_id_of_another_queue(state: ApiState, queue: PriorityQueue, task_id: str) -> None:
    """A task id names one task in every queue: GET and PATCH /tasks/{id} find a task by its id alone."""
    for kind, other in state.context.queues.items():
        if kind != queue.kind and other.records.exists(task_id):
            raise ApiError(409, f"task id {task_id} is taken by a task of the {kind} scheduler", field="id")


def _given_back(queue: PriorityQueue, task_id: str, organisation: str, status: str | None) -> TaskRecord:
    """A task pushed again by the runner that popped it: released to its place in the queue."""
    if status in (TaskStatus.DISPATCHED, TaskStatus.RUNNING):
        outcome = queue.release(task_id)
        logger.info("task %s of organisation %s given back to the %s queue by its runner (%s)",
                    task_id, organisation, queue.kind, outcome, extra=task_fields(task_id, queue.kind, organisation))
    record = queue.records.get(task_id)
    if record is None:
        raise ApiError(409, f"task {task_id} is gone")
    return record


def _why_taken(queue: PriorityQueue, task_id: str, organisation: str) -> str:
    record = queue.records.get(task_id)
    if record is not None and record.organisation == organisation and record.status in FINAL_STATUSES:
        return (f"task {task_id} has ended ({record.status.value}); push the work without an id "
                "to run it again")
    return f"task id {task_id} is taken by other work"


@router.post("/schedulers/{scheduler_id}/pop", response_model=PopResponse, responses=documented(404),
             openapi_extra=body_doc(filters.FilterRequest, required=False))
async def pop(
    scheduler_id: str,
    request: Request,
    state: State,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 1,
) -> Response:
    """Take up to `limit` tasks in serving order, each dispatched under a lease. The runner then PATCHes
    /tasks/{id} to running and completed or failed; a task whose lease runs out returns to the queue."""
    # Served by the hot routes (hot_routes.py) first; this route documents it and takes what they leave.
    return as_response(await pop_answer(state, scheduler_id, await request.body(), limit,
                                        pull_runner_name(request.client.host if request.client else None)))


async def pop_answer(state: ApiState, scheduler_id: str, raw_body: bytes, limit: int, runner: str) -> Answer:
    queue = queue_of(state, scheduler_id)
    constraints = filters.plugin_constraints(filters.parse(parsed_body(raw_body, filters.FilterRequest)),
                                             queue.kind)
    reap_if_due(state, queue)
    plugin_ids: list[str] | None = None
    if not constraints.empty:
        images = constraints.images
        plugin_ids = sorted(constraints.plugin_ids(plugins_by_image(queue, images) if images else {}))
        if not plugin_ids:
            return tasks_answer([])
    claimed = await queue.claim_batched(limit, plugin_ids, lease_seconds=state.context.settings.pull_lease_seconds)
    state.show_pull_runner(runner)
    for record in claimed:
        _log_popped(record)
    return tasks_answer(claimed)


def _log_popped(record: TaskRecord) -> None:
    logger.info("task %s of organisation %s popped from %s (attempt %d)",
                record.id, record.organisation, record.kind, record.attempts,
                extra=task_fields(record.id, record.kind, record.organisation))


def reap_if_due(state: ApiState, queue: PriorityQueue) -> None:
    """Return expired leases to the queue before a pop, at most once per reap interval per queue.

    The beat reaps too; doing it here as well means pull runners get expired work back even when no
    beat runs. Only pulled tasks: those forwarded to Celery runners are the dispatchers' and the beat's,
    which know (or wait for) what the runners said while Redis was away."""
    now = time.monotonic()
    if now - state.last_reap.get(queue.kind, -math.inf) < state.settings.reap_interval_seconds:
        return
    state.last_reap[queue.kind] = now
    result = queue.reap(pulled_only=True)
    for record in queue.records.get_many(result.requeued):
        logger.info("task %s of organisation %s: lease expired, back in the %s queue",
                    record.id, record.organisation, queue.kind,
                    extra=task_fields(record.id, record.kind, record.organisation))
    for record in queue.records.get_many(result.dead_lettered):
        logger.warning("task %s of organisation %s: lease expired %d times, dead-lettered",
                       record.id, record.organisation, record.expired_leases,
                       extra=task_fields(record.id, record.kind, record.organisation))
