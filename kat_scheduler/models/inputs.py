"""What every input from outside must be before anything uses it.

Strings reach kat_scheduler from the HTTP API, RabbitMQ events and the answers of Katalogus, Octopoes
and Bytes. All of them pass the types and checks of this module, so one place says what is refused:

- text: valid Unicode (no lone surrogates, which Python's json accepts and which crash hashing),
  no control characters in names and keys, a bounded length;
- free-form JSON (a payload's `data`, a boefje's `arguments`): nesting at most MAX_DEPTH deep, so that
  whatever is stored can always be read back and shown;
- organisation ids: lower-case slugs (letters, digits, `-`, `_`) of at most 32 characters, as
  OpenKAT's web UI defines organisation codes; they become parts of Redis key names;
- plugin ids: letters, digits, `-`, `_` and `.`;
- task ids: UUIDs, always written in their canonical form, so that one task has one id.

A model field typed with one of these refuses the input with a pydantic error naming the field; the
API turns it into a 400 and the listeners dead-letter the message, before anything is written.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

MAX_DEPTH = 32  # of free-form JSON: objects and arrays within each other
MAX_TEXT_LENGTH = 65_536  # characters of one string inside free-form JSON
MAX_KEY_LENGTH = 4096  # characters of an object key (OOI primary key) or another identifier
ORGANISATION_ID_LENGTH = 32
PLUGIN_ID_LENGTH = 128
MAX_MIME_TYPES = 64  # of one raw file: each one is a Katalogus look-up

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_ORGANISATION_ID = re.compile(r"[-\w]+")
_PLUGIN_ID = re.compile(r"[-.\w]+")


class UnfitInput(ValueError):
    """Input that kat_scheduler refuses; `reason` says why, on one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_text(value: str, max_length: int = MAX_TEXT_LENGTH) -> str:
    if len(value) > max_length:
        raise UnfitInput(f"longer than {max_length} characters")
    if not value.isascii() and _SURROGATE.search(value):
        raise UnfitInput("holds a lone surrogate, which is not Unicode text")
    return value


def check_name(value: str) -> str:
    """An identifier or key: bounded text without control characters."""
    check_text(value, MAX_KEY_LENGTH)
    if _CONTROL.search(value):
        raise UnfitInput("must not contain control characters")
    return value


def check_organisation_id(value: str) -> str:
    if value != value.lower():
        raise UnfitInput("an organisation id is lower-case letters, digits, '-' and '_'")
    return _check_id(value, ORGANISATION_ID_LENGTH, _ORGANISATION_ID, "an organisation id",
                     "lower-case letters, digits, '-' and '_'")


def check_plugin_id(value: str) -> str:
    return _check_id(value, PLUGIN_ID_LENGTH, _PLUGIN_ID, "a plugin id", "letters, digits, '-', '_' and '.'")


def _check_id(value: str, max_length: int, alphabet: re.Pattern[str], what: str, alphabet_text: str) -> str:
    if not value or len(value) > max_length:
        raise UnfitInput(f"{what} has 1 to {max_length} characters")
    check_text(value)
    if not alphabet.fullmatch(value):
        raise UnfitInput(f"{what} is {alphabet_text}")
    return value


def canonical_task_id(value: object) -> object:
    """A UUID in any spelling (upper case, braces, urn:uuid:) as its one canonical string."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        return value
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise UnfitInput("a task id is a UUID") from None


def check_document(value: Any) -> Any:
    """Free-form JSON: every string (keys too) is text, nesting is at most MAX_DEPTH deep."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise UnfitInput(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, inner in item.items():
                    if isinstance(key, str):
                        check_text(key)
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)
    return value


def load_json(raw: bytes | str) -> Any:
    """JSON from outside, parsed and checked as free-form JSON (UnfitInput when it is not fit)."""
    try:
        return check_document(json.loads(raw))
    except RecursionError:
        raise UnfitInput(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if isinstance(error, UnfitInput):
            raise
        raise UnfitInput(f"not JSON: {error}") from None


def first_problem(error: ValidationError) -> str:
    """The first problem of a validation error on one line, e.g. `client_id: Value error, ...`."""
    problems = error.errors(include_url=False)
    if not problems:
        return str(error).splitlines()[0]
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _as_pydantic_error(check: Any) -> Any:
    """`check` for a pydantic validator: its UnfitInput becomes a validation error with the reason."""
    def validate(value: Any) -> Any:
        try:
            return check(value)
        except UnfitInput as error:
            raise PydanticCustomError("unfit_input", error.reason) from None
    return validate


Text = Annotated[str, AfterValidator(_as_pydantic_error(check_text))]
Name = Annotated[str, AfterValidator(_as_pydantic_error(check_name))]
OrganisationId = Annotated[str, AfterValidator(_as_pydantic_error(check_organisation_id))]
PluginId = Annotated[str, AfterValidator(_as_pydantic_error(check_plugin_id))]
TaskId = Annotated[str, BeforeValidator(_as_pydantic_error(canonical_task_id))]
Document = Annotated[dict[str, Any], AfterValidator(_as_pydantic_error(check_document))]
