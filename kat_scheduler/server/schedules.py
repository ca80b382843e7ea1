"""/schedules: recurring work, one schedule per work identity (kat-contracts.md §7).

The identity hash is the payload model's hash of `data`, so a second schedule for the same work is a
409. Deleting a schedule leaves its tasks alone: they keep their records and their schedule_id."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from kat_scheduler.kinds import KINDS
from kat_scheduler.models import Schedule
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories import DuplicateSchedule, ScheduleRepository
from kat_scheduler.schedulers.base import SCHEDULERS
from kat_scheduler.server import filters
from kat_scheduler.server.bodies import documented as body_doc
from kat_scheduler.server.bodies import json_body
from kat_scheduler.server.config import MAX_PAGE_SIZE
from kat_scheduler.server.cron import next_run
from kat_scheduler.server.deps import ApiState, State
from kat_scheduler.server.errors import ApiError, documented
from kat_scheduler.server.pages import page_links
from kat_scheduler.server.schemas import ScheduleCreate, SchedulePage, SchedulePatch

logger = logging.getLogger(__name__)

# The fields a person may set that the scheduler then leaves as they are (Schedule.person_set).
PERSON_FIELDS = frozenset({"enabled", "schedule", "deadline_at"})
router = APIRouter(tags=["schedules"])
SCAN_LIMIT = 20_000  # schedules read per scheduler for one filtered listing or search
CHUNK = 1000
MAX_OFFSET = 100_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


@router.get("/schedules", response_model=SchedulePage, responses=documented())
def list_schedules(
    request: Request,
    state: State,
    scheduler_id: Annotated[str | None, Query(max_length=200)] = None,
    organisation: Annotated[str | None, Query(max_length=200)] = None,
    enabled: bool | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> SchedulePage:
    """Schedules, newest first."""
    def keep(schedule: Schedule) -> bool:
        return ((organisation is None or schedule.organisation == organisation)
                and (enabled is None or schedule.enabled is enabled))

    filtered = organisation is not None or enabled is not None
    count, page = _select(state, _kinds(scheduler_id), keep if filtered else None, offset, limit)
    previous, following = page_links(request, offset, limit, count)
    return SchedulePage(count=count, next=following, previous=previous, results=page)


@router.post("/schedules/search", response_model=SchedulePage, responses=documented(),
             openapi_extra=body_doc(filters.FilterRequest))
async def search_schedules(request: Request, state: State, offset: Offset = 0, limit: Limit = 100) -> SchedulePage:
    """Schedules matching OpenKAT-style filters on any field, e.g. column "data", field "boefje__id"."""
    conditions = filters.parse(await json_body(request, filters.FilterRequest))
    return await run_in_threadpool(_search, request, state, conditions, offset, limit)


def _search(request: Request, state: ApiState, conditions: filters.FilterSet, offset: int, limit: int
            ) -> SchedulePage:

    def keep(schedule: Schedule) -> bool:
        return conditions.matches(schedule.model_dump(mode="json"))

    count, page = _select(state, list(KINDS), None if conditions.empty else keep, offset, limit)
    previous, following = page_links(request, offset, limit, count)
    return SchedulePage(count=count, next=following, previous=previous, results=page)


@router.post("/schedules", status_code=201, response_model=Schedule, responses=documented(409),
             openapi_extra=body_doc(ScheduleCreate))
async def create_schedule(request: Request, state: State) -> Schedule:
    body = await json_body(request, ScheduleCreate)
    if body.scheduler_id not in KINDS:
        raise ApiError(400, f"scheduler_id: {body.scheduler_id!r} is not one of {', '.join(KINDS)}",
                       field="scheduler_id")
    scheduler = SCHEDULERS.get(body.scheduler_id)
    if scheduler is None or not scheduler.runs_schedules:
        raise ApiError(400, f"scheduler_id: {body.scheduler_id} tasks are queued by events (a raw file for "
                       "a normalizer), not by schedules; a schedule for them would never run",
                       field="scheduler_id")
    now = _now(state)
    queue = state.context.queues[body.scheduler_id]
    data, identity = _checked_data(queue, body.data, body.organisation)
    next_time = None if body.schedule is None else next_run(body.schedule, now)
    deadline = body.deadline_at or next_time or now
    try:
        schedule = state.context.schedules[body.scheduler_id].new(
            body.organisation, data, identity, cron=body.schedule, deadline_at=deadline, enabled=body.enabled,
            now=now, person_set=PERSON_FIELDS & body.model_fields_set,
        )
    except DuplicateSchedule as error:
        raise ApiError(409, f"a schedule for this work exists already: {error.holder_id}") from None
    logger.info("schedule %s of organisation %s created (%s)", schedule.id, schedule.organisation,
                schedule.schedule or "no cron")
    return schedule


@router.get("/schedules/{schedule_id}", response_model=Schedule, responses=documented(404))
def get_schedule(schedule_id: str, state: State) -> Schedule:
    return _find(state, schedule_id)[1]


@router.patch("/schedules/{schedule_id}", response_model=Schedule, responses=documented(404, 409),
              openapi_extra=body_doc(SchedulePatch))
async def patch_schedule(schedule_id: str, request: Request, state: State) -> Schedule:
    """Change enabled, schedule (cron; null removes it), deadline_at or data. A new cron without a new
    deadline_at moves the deadline to the cron's next time."""
    patch = await json_body(request, SchedulePatch)
    repository, schedule = _find(state, schedule_id)
    given = patch.model_fields_set
    now = _now(state)
    changes: dict[str, Any] = {"modified_at": now}
    if "enabled" in given and patch.enabled is not None:
        changes["enabled"] = patch.enabled
    if "data" in given and patch.data is not None:
        changes["data"], changes["hash"] = _checked_data(state.context.queues[repository.kind], patch.data,
                                                         schedule.organisation)
    if "schedule" in given:
        changes["schedule"] = patch.schedule
        if patch.schedule is not None:
            next_time = next_run(patch.schedule, now)  # also validates
            if "deadline_at" not in given:
                changes["deadline_at"] = next_time
    if "deadline_at" in given and patch.deadline_at is not None:
        changes["deadline_at"] = patch.deadline_at
    changes["person_set"] = sorted(set(schedule.person_set) | (PERSON_FIELDS & set(changes)))
    updated = schedule.model_copy(update=changes)
    try:
        repository.save(updated, previous_hash=schedule.hash)
    except DuplicateSchedule as error:
        raise ApiError(409, f"a schedule for this work exists already: {error.holder_id}") from None
    except KeyError:
        raise ApiError(404, f"schedule {schedule_id} is gone") from None
    logger.info("schedule %s of organisation %s changed: %s", schedule.id, schedule.organisation,
                ", ".join(sorted(set(changes) - {"modified_at"})) or "nothing")
    return updated


@router.delete("/schedules/{schedule_id}", status_code=204, response_class=Response, responses=documented(404))
def delete_schedule(schedule_id: str, state: State) -> Response:
    """Delete a schedule; its tasks stay as they are."""
    repository, schedule = _find(state, schedule_id)
    repository.delete(schedule)
    logger.info("schedule %s of organisation %s deleted", schedule.id, schedule.organisation)
    return Response(status_code=204)


# -- helpers --------------------------------------------------------------------------------------


def _now(state: ApiState) -> datetime:
    return datetime.fromtimestamp(state.context.clock_ms() / 1000, tz=UTC)


def _kinds(scheduler_id: str | None) -> list[str]:
    if scheduler_id is None:
        return list(KINDS)
    if scheduler_id not in KINDS:
        raise ApiError(400, f"scheduler_id: {scheduler_id!r} is not one of {', '.join(KINDS)}", field="scheduler_id")
    return [scheduler_id]


def _checked_data(queue: PriorityQueue, data: dict[str, Any], organisation: str) -> tuple[dict[str, Any], str]:
    """The payload as the schedule stores it (validated, without a task id) and its identity hash."""
    payload = queue.validate({key: value for key, value in data.items() if key != "id"})
    if payload.organization != organisation:
        raise ApiError(400, f"organisation {organisation!r} differs from the payload's organization "
                       f"{payload.organization!r}", field="organisation")
    return payload.model_dump(mode="json", exclude={"id"}), payload.hash


def _find(state: ApiState, schedule_id: str) -> tuple[ScheduleRepository, Schedule]:
    for repository in state.context.schedules.values():
        schedule = repository.get(schedule_id)
        if schedule is not None:
            return repository, schedule
    raise ApiError(404, f"no schedule {schedule_id}")


def _select(state: ApiState, kinds: Sequence[str], keep: Callable[[Schedule], bool] | None, offset: int,
            limit: int) -> tuple[int, list[Schedule]]:
    """(count, page) of the schedules `keep` accepts (all when None), newest first."""
    found: list[Schedule] = []
    count = 0
    for kind in kinds:
        repository = state.context.schedules[kind]
        if keep is None:
            count += repository.count()
            found += repository.list(0, offset + limit)
            continue
        for start in range(0, SCAN_LIMIT, CHUNK):
            batch = repository.list(start, CHUNK)
            matched = [schedule for schedule in batch if keep(schedule)]
            count += len(matched)
            found += matched
            if len(batch) < CHUNK:
                break
    found.sort(key=lambda schedule: (schedule.created_at, schedule.id), reverse=True)
    return count, found[offset:offset + limit]
