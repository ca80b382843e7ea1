"""Turning a message body into a validated model, with a one-line reason when it cannot be done.

Both the RabbitMQ listener and the in-process bus decode the same way, so a message that is
malformed on one is malformed on the other, with the same reason in the log and the dead letter.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from kat_scheduler.models.inputs import UnfitInput, check_organisation_id, first_problem

M = TypeVar("M", bound=BaseModel)


class MalformedMessage(ValueError):
    """The body is not JSON or not the expected shape; `reason` says why, on one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(model: type[M], body: bytes | str) -> M:
    """The body as `model`; MalformedMessage for anything a broker can deliver that is not one."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise MalformedMessage(first_problem(error)) from None
    except (RecursionError, ValueError, TypeError) as error:
        raise MalformedMessage(f"cannot be read: {type(error).__name__}") from None


def organisation_of(message: BaseModel) -> str | None:
    """The organisation a message is about: `client_id` on mutations, `organization` on raw files."""
    for field in ("organization", "client_id", "organisation"):
        value = getattr(message, field, None)
        if isinstance(value, str):
            return value
    return None


def peek_organisation(body: bytes | str) -> str | None:
    """Best effort organisation of a body that failed to decode, for the log line: only a well-formed
    organisation id, so that a hostile body cannot write what it likes into the log."""
    try:
        data = json.loads(body)
    except (RecursionError, ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("organization") or data.get("client_id")
    try:
        return check_organisation_id(value) if isinstance(value, str) else None
    except UnfitInput:
        return None
