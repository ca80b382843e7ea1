"""/health and /metrics.

/health answers whether this API can reach its Redis (503 when not); with externals=true it also says
whether Katalogus, Octopoes, Bytes and RabbitMQ answer (server/externals.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kat_scheduler.server.deps import State
from kat_scheduler.server.errors import documented
from kat_scheduler.server.externals import redis_up
from kat_scheduler.server.schemas import Health
from kat_scheduler.version import __version__

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health,
            responses={**documented(), 503: {"model": Health, "description": "Redis is unreachable"}})
def health(state: State, externals_: Annotated[bool, Query(alias="externals")] = False) -> JSONResponse:
    context = state.context
    checked, age = state.externals_probe.read() if externals_ else ({}, None)
    healthy = redis_up(context)
    body = Health(service="scheduler", healthy=healthy, version=__version__, externals=checked,
                  externals_age_seconds=age)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
                       **documented()})
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
