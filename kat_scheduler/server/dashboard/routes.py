"""The dashboard's routes: its pages, their live parts, its data and its two actions on dead letters.

Behind the API's token when one is set (auth.py: the sign-in form sets a cookie the dashboard's paths
take). The actions also need the header X-Dashboard-Action, which the page's script sends and which a
form on another site cannot.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from kat_scheduler.logging_setup import task_fields
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import Change
from kat_scheduler.repositories.task_records import TaskRecord
from kat_scheduler.server.auth import DASHBOARD_COOKIE, dashboard_cookie
from kat_scheduler.server.dashboard import render
from kat_scheduler.server.dashboard.data import gather, task_document
from kat_scheduler.server.deps import ApiState, State, queue_of
from kat_scheduler.server.errors import ApiError, documented

logger = logging.getLogger(__name__)
router = APIRouter(tags=["dashboard"])
ACTIONS = ("requeue", "drop")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard(state: State) -> HTMLResponse:
    body = render.overview(gather(state.context, state.runners))
    return HTMLResponse(render.page("kat_scheduler dashboard", "queues, runners and dead letters", body,
                                    refresh_url="/dashboard/live"))


@router.get("/dashboard/live", response_class=HTMLResponse, include_in_schema=False)
def dashboard_live(state: State) -> HTMLResponse:
    return HTMLResponse(render.overview(gather(state.context, state.runners)))


@router.get("/dashboard/data", responses=documented())
def dashboard_data(state: State) -> JSONResponse:
    """Everything the dashboard shows, as JSON: per kind the queue's figures per organisation, the head of
    each organisation's queue with the reason for each score, limits, runner slots, samples of the last
    hour and dead letters; the beat leader and the runners seen lately."""
    return JSONResponse(gather(state.context, state.runners))


@router.get("/dashboard/tasks/{task_id}", response_class=HTMLResponse, include_in_schema=False)
def task_page(task_id: str, state: State) -> HTMLResponse:
    record = _record(state, task_id)
    if record is None:
        return HTMLResponse(render.page("no such task", task_id, render.error_body(f"No task {task_id}: it never "
                                        "existed here, or its record expired.")), status_code=404)
    return HTMLResponse(render.page(f"task {task_id}", f"{record.kind} task of {record.organisation}",
                                    render.task_body(task_document(record)),
                                    refresh_url=f"/dashboard/tasks/{task_id}/live"))


@router.get("/dashboard/tasks/{task_id}/live", response_class=HTMLResponse, include_in_schema=False)
def task_page_live(task_id: str, state: State) -> HTMLResponse:
    record = _record(state, task_id)
    if record is None:
        raise ApiError(404, f"no task {task_id}")
    return HTMLResponse(render.task_body(task_document(record)))


@router.post("/dashboard/dead-letters/{scheduler_id}/{task_id}/{action}", responses=documented(400, 404, 409))
def dead_letter_action(scheduler_id: str, task_id: str, action: str, state: State,
                       x_dashboard_action: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Requeue a dead letter (back at its old place, with no expired leases counted) or drop it (its record
    expires after the retention period), as `kat-scheduler dead-letters` does."""
    if x_dashboard_action is None:
        raise ApiError(400, "dashboard actions carry the header X-Dashboard-Action")
    if action not in ACTIONS:
        raise ApiError(404, f"no action {action!r}; the actions are {', '.join(ACTIONS)}")
    queue = queue_of(state, scheduler_id)
    if not queue.is_dead(task_id):
        raise ApiError(404, f"no dead letter {task_id} in the {scheduler_id} queue")
    if action == "requeue":
        requeue = queue.requeue_dead(task_id)
        if requeue.outcome is Change.DUPLICATE:
            raise ApiError(409, f"task {requeue.holder} holds the same work now; drop this dead letter instead")
        outcome = "requeued" if requeue.outcome is TaskStatus.QUEUED else requeue.outcome.value
    else:
        outcome = "dropped" if queue.drop_dead(task_id) is Change.DROPPED else "not dropped"
    logger.info("dashboard: dead letter %s of the %s queue %s", task_id, scheduler_id, outcome,
                extra=task_fields(task_id, scheduler_id))
    return JSONResponse({"id": task_id, "scheduler_id": scheduler_id, "outcome": outcome})


@router.post("/dashboard/login", include_in_schema=False)
async def sign_in(request: Request, state: State) -> Response:
    """The sign-in form: the right token gets the dashboard's cookie and goes to the dashboard."""
    token = state.settings.token
    if token is None:
        return RedirectResponse("/dashboard", status_code=303)
    given = parse_qs((await request.body()).decode(errors="replace")).get("token", [""])[0]
    if not secrets.compare_digest(given.encode(), token.encode()):
        logger.warning("dashboard: a sign-in with a wrong token from %s", request.client.host if request.client
                       else "an unknown address")
        return HTMLResponse(render.page("sign in", "kat_scheduler dashboard", render.login_body("That is not the "
                                        "token.")), status_code=401)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(DASHBOARD_COOKIE, dashboard_cookie(token), httponly=True, samesite="strict",
                        path="/dashboard", secure=request.url.scheme == "https")
    return response


def _record(state: ApiState, task_id: str) -> TaskRecord | None:
    for queue in state.context.queues.values():
        record = queue.records.get(task_id)
        if record is not None:
            return record
    return None
