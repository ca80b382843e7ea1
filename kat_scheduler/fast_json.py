"""Compact JSON of plain data, with orjson: several times as fast as the standard library on a task,
which the API writes once or twice for every push and pop, and a claim reads for every task it takes.

orjson refuses some of what the standard library takes (an integer beyond 64 bits, which a client may put
in a task's data; NaN): such a document is written or read by the standard library instead, to the same
data."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
