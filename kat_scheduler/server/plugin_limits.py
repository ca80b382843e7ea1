"""/limits: plugin limits across organisations (kat_scheduler/plugin_limits.py), read and changed at run
time; a change holds from the next claim or pop on."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from kat_scheduler import plugin_limits
from kat_scheduler.models.inputs import check_plugin_id
from kat_scheduler.queues.limits import BadLimit, PluginLimit
from kat_scheduler.server.bodies import documented as body_doc
from kat_scheduler.server.bodies import json_body
from kat_scheduler.server.deps import State
from kat_scheduler.server.errors import ApiError, documented
from kat_scheduler.server.schemas import PluginLimitIn, PluginLimitOut

router = APIRouter(tags=["limits"])


@router.get("/limits", response_model=list[PluginLimitOut], responses=documented())
def list_limits(state: State) -> list[PluginLimitOut]:
    return [_out(report) for report in plugin_limits.reports(state.context)]


@router.put("/limits/{plugin_id}", response_model=PluginLimitOut, responses=documented(),
            openapi_extra=body_doc(PluginLimitIn))
async def put_limit(plugin_id: str, request: Request, state: State) -> PluginLimitOut:
    _checked(plugin_id)
    body = await json_body(request, PluginLimitIn)
    try:
        limit = PluginLimit(body.concurrency, body.rate)
    except BadLimit as error:
        raise ApiError(400, str(error), field="rate" if body.rate else "body") from None
    plugin_limits.set_limit(state.context, plugin_id, limit)
    return next(_out(report) for report in plugin_limits.reports(state.context) if report.plugin_id == plugin_id)


@router.delete("/limits/{plugin_id}", status_code=204, response_class=Response, responses=documented(404))
def delete_limit(plugin_id: str, state: State) -> Response:
    _checked(plugin_id)
    if not plugin_limits.delete_limit(state.context, plugin_id):
        raise ApiError(404, f"plugin {plugin_id} has no limit")
    return Response(status_code=204)


def _checked(plugin_id: str) -> None:
    try:
        check_plugin_id(plugin_id)
    except ValueError as error:
        raise ApiError(400, f"plugin_id: {error}", field="plugin_id") from None


def _out(report: plugin_limits.PluginLimitReport) -> PluginLimitOut:
    return PluginLimitOut(plugin_id=report.plugin_id, concurrency=report.limit.concurrency, rate=report.limit.rate,
                          in_flight=report.in_flight, queued=report.queued, held=report.held)
