"""Every refusal the API gives: a status code, a reason a person can act on, and a JSON body
`{"detail": reason, ...}`. Bad input is a 4xx, never a 500; Redis being away is a 503."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from kat_scheduler.queues import InvalidItem
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5  # what a 503 asks a client to wait before it tries again


class ErrorBody(BaseModel):
    """What every 4xx and 5xx answer carries."""

    detail: str
    field: str | None = None


class ApiError(Exception):
    """Raised by route handlers; turned into a JSON answer with `status` and `reason`."""

    def __init__(self, status: int, reason: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field
        self.headers = headers or {}


def error_body(reason: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": reason}
    if field is not None:
        body["field"] = field
    return body


def error_response(status: int, reason: str, *, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(reason, field), status_code=status, headers=headers)


def known_error(error: Exception, method: str, path: str) -> ApiError | None:
    """A handler's exception as the refusal the API answers, or None for an error of ours (a 500).
    Shared by FastAPI's handlers (install_error_handlers) and the hot routes (hot_routes.py)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, InvalidItem):
        return ApiError(400, f"data.{error.field}: {error.reason}", field=f"data.{error.field}")
    if isinstance(error, StoreUnavailable):
        logger.error("%s %s: %s", method, path, error)
        where = f" ({error.store}: {error.url})"
        return ApiError(503, f"the scheduler's Redis is unreachable{where}; try again later",
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return None


def describe_validation(error: RequestValidationError) -> tuple[str, str | None]:
    """The first problem of a request's validation (query and path) as (reason, field)."""
    problems = [{**problem, "loc": tuple(problem.get("loc", ()))[1:] or tuple(problem.get("loc", ()))}
                for problem in error.errors()]
    return describe_problems(problems)


def describe_problems(problems: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """The first of pydantic's problems as (reason, field), without echoing the input."""
    if not problems:
        return "malformed request", None
    first = problems[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or None
    reason = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg", "invalid"))
    if len(problems) > 1:
        reason += f" (and {len(problems) - 1} more problem(s))"
    return reason, field


def install_error_handlers(app: FastAPI) -> None:
    async def on_known_error(request: Request, error: Exception) -> JSONResponse:
        known = known_error(error, request.method, request.url.path)
        assert known is not None
        return error_response(known.status, known.reason, field=known.field, headers=known.headers)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        reason, field = describe_validation(error)
        return error_response(400, reason, field=field)

    app.add_exception_handler(RequestValidationError, on_validation)
    for kind in (ApiError, InvalidItem, StoreUnavailable):
        app.add_exception_handler(kind, on_known_error)


_DESCRIPTIONS = {
    400: "malformed request: the reason names the field",
    401: "a bearer token is needed (SCHEDULER_API_TOKEN)",
    404: "not found",
    409: "conflicts with the current state",
    413: "request body too large",
    429: "the queue is full",
    503: "Redis is unreachable",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route can answer (400, 401, 413 and 503 always)."""
    every = sorted({400, 401, 413, 503, *codes})
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS.get(code, "error")} for code in every}
