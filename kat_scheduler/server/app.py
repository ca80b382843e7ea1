"""The API app: `create_app(context)` wires the routers, the token check, the limits and the error
handling to one AppContext. `kat-scheduler api` serves it with uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from kat_scheduler.context.context import AppContext
from kat_scheduler.metrics import register
from kat_scheduler.server import dashboard, health, hot_routes, plugin_limits, schedulers, schedules, tasks
from kat_scheduler.server.auth import TokenCheck, document_security
from kat_scheduler.server.bodies import BODY_MODELS
from kat_scheduler.server.config import ApiSettings
from kat_scheduler.server.dashboard.render import sign_in_page
from kat_scheduler.server.deps import ApiState
from kat_scheduler.server.errors import install_error_handlers
from kat_scheduler.server.limits import BodySizeLimit
from kat_scheduler.version import __version__

logger = logging.getLogger(__name__)
TITLE = "kat_scheduler"
DESCRIPTION = "OpenKAT's scheduler API (kat-contracts.md §7): queues, tasks, schedules. See docs/api.md."


class SchedulerApi(FastAPI):
    """FastAPI, with push, pop and a task's PATCH served by the hot routes first (hot_routes.py), behind the
    same token check and body size limit."""

    hot_stack: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = hot_routes.match(scope)
        if route is None:
            await super().__call__(scope, receive, send)
        else:
            scope[hot_routes.SCOPE_KEY] = route
            await self.hot_stack(scope, receive, send)


def create_app(context: AppContext, settings: ApiSettings | None = None) -> SchedulerApi:
    """The API on `context`; `settings` default to the environment (SCHEDULER_API_*)."""
    settings = settings or ApiSettings.from_settings(context.settings)
    app = SchedulerApi(title=TITLE, version=__version__, description=DESCRIPTION)
    app.state.api = ApiState(context=context, settings=settings)
    app.hot_stack = BodySizeLimit(hot_routes.HotRoutes(app.state.api), max_bytes=settings.max_body_bytes)
    app.state.metrics_registry = CollectorRegistry(auto_describe=False)
    register(context, app.state.metrics_registry)
    # The routes go straight into the app's own list, the ones runners call most first: FastAPI's
    # include_router keeps each router as a level of its own that every request walks through.
    for routes in (schedulers.router, tasks.router, health.router, schedules.router, plugin_limits.router,
                   dashboard.router):
        app.router.routes.extend(routes.routes)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.token is not None:
        app.add_middleware(TokenCheck, token=settings.token, sign_in_page=sign_in_page())
        app.hot_stack = TokenCheck(app.hot_stack, token=settings.token)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    if settings.token is None:
        logger.warning("SCHEDULER_API_TOKEN is not set: the scheduler API is open to anyone who can reach it")
    else:
        logger.info("the scheduler API requires a bearer token (SCHEDULER_API_TOKEN)")
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with our error convention: a failed validation is a 400, not FastAPI's 422."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    document_security(document)
    for name, model in BODY_MODELS.items():  # the bodies the routes read themselves (server/bodies.py)
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    app.openapi_schema = document
    return document
