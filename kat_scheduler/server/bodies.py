"""Request bodies, read by the API itself rather than by FastAPI.

OpenKAT's boefje runner posts JSON without a Content-Type header, which FastAPI refuses (or reads as
something else) depending on its release; so the routes take the raw body and validate it here, as JSON
whatever the header says, straight from the bytes with pydantic (which is also the cheapest way: one
parse, no intermediate objects). `documented(Model)` puts the body in the OpenAPI document as FastAPI
would have."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from kat_scheduler.server.errors import ApiError, describe_problems

Body = TypeVar("Body", bound=BaseModel)
BODY_MODELS: dict[str, type[BaseModel]] = {}  # the models documented as request bodies, by name


async def json_body(request: Request, model: type[Body]) -> Body:
    """The body as `model`; 400 naming the first problem, also for a missing or malformed body."""
    return required_body(await request.body(), model)


async def optional_json_body(request: Request, model: type[Body]) -> Body | None:
    """The body as `model`, or None when there is none."""
    return parsed_body(await request.body(), model)


def required_body(raw: bytes, model: type[Body]) -> Body:
    parsed = parsed_body(raw, model)
    if parsed is None:
        raise ApiError(400, "this request needs a JSON body", field="body")
    return parsed


def parsed_body(raw: bytes, model: type[Body]) -> Body | None:
    """`raw` as `model`, or None when it is empty."""
    if not raw.strip():
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        reason, field = describe_problems(error.errors(include_url=False, include_input=False))
        raise ApiError(400, reason, field=field) from None


def documented(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` of a route whose body is `model`."""
    BODY_MODELS[model.__name__] = model
    return {"requestBody": {"required": required, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}
