"""Compact JSON of plain data, with orjson: several times as fast as the standard library's encoder on a
task, which the API writes once or twice for every push and pop.

orjson refuses what the standard library writes (an integer beyond 64 bits, which a client may put in a
task's data); such a document is written by the standard library instead, to the same JSON."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
