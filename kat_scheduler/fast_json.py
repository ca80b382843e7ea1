"""Compact JSON of plain data, with orjson: several times as fast as the standard library on a task,
which the API writes once or twice for every push and pop, and a claim reads for every task it takes.

orjson writes no integer beyond 64 bits (which a client may put in a task's data) and reads one as a float;
it refuses NaN and infinities. Such a document is written or read by the standard library instead, to the
same data. Only a number of 19 digits or more can lie beyond 64 bits, so loads leaves a text with fewer
digits than that in all to orjson (counting them costs less than a search for a run of 19)"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


NOT_DIGITS = bytes(byte for byte in range(256) if not 0x30 <= byte <= 0x39)


def loads(text: str) -> Any:
    encoded = text.encode()
    if len(encoded.translate(None, NOT_DIGITS)) < 19:
        try:
            return orjson.loads(encoded)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
