"""/health and /metrics.

/health answers whether this API can reach its Redis (503 when not); with externals=true it also asks
Katalogus, Octopoes, Bytes and RabbitMQ, all at once and each within its own timeout."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import pika
import redis
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kat_scheduler.context.context import AppContext
from kat_scheduler.server.deps import State
from kat_scheduler.server.errors import documented
from kat_scheduler.server.schemas import Health
from kat_scheduler.version import __version__

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
RABBITMQ_TIMEOUT_SECONDS = 2.0
OCTOPOES_PROBE_ORGANISATION = "_dev"  # used when Katalogus names no organisation to ask Octopoes about


def redis_up(context: AppContext) -> bool:
    try:
        return bool(context.redis.ping())
    except redis.RedisError as error:
        logger.warning("health: Redis did not answer: %s", error)
        return False


def rabbitmq_up(url: str, timeout: float = RABBITMQ_TIMEOUT_SECONDS) -> bool:
    """Open and close one AMQP connection, without retries."""
    try:
        parameters = pika.URLParameters(url)
        parameters.socket_timeout = timeout
        parameters.stack_timeout = timeout
        parameters.blocked_connection_timeout = timeout
        parameters.connection_attempts = 1
        parameters.retry_delay = 0
        pika.BlockingConnection(parameters).close()
    except Exception as error:  # pika raises many types; any of them means "not reachable"
        logger.warning("health: RabbitMQ did not answer: %s", type(error).__name__)
        return False
    return True


def octopoes_up(context: AppContext) -> bool:
    """Octopoes answers health per organisation: ask about the first one Katalogus knows."""
    try:
        organisations = context.katalogus.get_organisations()
    except Exception:
        organisations = []
    organisation = organisations[0].id if organisations else OCTOPOES_PROBE_ORGANISATION
    return context.octopoes.health(organisation)


def externals(context: AppContext) -> dict[str, bool]:
    probes: dict[str, Callable[[], bool]] = {
        "katalogus": context.katalogus.health,
        "octopoes": lambda: octopoes_up(context),
        "bytes": context.bytes.health,
        "redis": lambda: redis_up(context),
        "rabbitmq": lambda: rabbitmq_up(context.settings.queue_uri),
    }
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(probe) for name, probe in probes.items()}
    return {name: _outcome(name, future.result) for name, future in futures.items()}


def _outcome(name: str, result: Callable[[], bool]) -> bool:
    try:
        return bool(result())
    except Exception as error:  # a probe that raises is a service that is not healthy
        logger.warning("health: %s check failed: %s", name, error)
        return False


@router.get("/health", response_model=Health,
            responses={**documented(), 503: {"model": Health, "description": "Redis is unreachable"}})
def health(state: State, externals_: Annotated[bool, Query(alias="externals")] = False) -> JSONResponse:
    context = state.context
    checked = externals(context) if externals_ else {}
    healthy = checked["redis"] if "redis" in checked else redis_up(context)
    body = Health(service="scheduler", healthy=healthy, version=__version__, externals=checked)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
                       **documented()})
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
