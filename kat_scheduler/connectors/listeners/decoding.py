"""Turning a message body into a validated model, with a one-line reason when it cannot be done.

Both the RabbitMQ listener and the in-process bus decode the same way, so a message that is
malformed on one is malformed on the other, with the same reason in the log and the dead letter.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class MalformedMessage(ValueError):
    """The body is not JSON or not the expected shape; `reason` says why, on one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(model: type[M], body: bytes | str) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise MalformedMessage(describe(error)) from None


def describe(error: ValidationError) -> str:
    """The first problem of a validation error, e.g. `operation: Input should be 'create', ...`."""
    problems = error.errors(include_url=False)
    if not problems:
        return str(error).splitlines()[0]
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def organisation_of(message: BaseModel) -> str | None:
    """The organisation a message is about: `client_id` on mutations, `organization` on raw files."""
    for field in ("organization", "client_id", "organisation"):
        value = getattr(message, field, None)
        if isinstance(value, str):
            return value
    return None


def peek_organisation(body: bytes | str) -> str | None:
    """Best effort organisation of a body that failed to decode, for the log line."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("organization") or data.get("client_id")
    return value if isinstance(value, str) else None
