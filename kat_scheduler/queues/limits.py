"""Plugin limits: at most so many tasks of a plugin in flight, at most so many claimed per period.

A limit holds across every organisation, dispatcher and API replica: queue.lua checks it in the same
call that claims, and counts what it lets through (docs/queue.md, "Plugin limits"). This module is the
limit's one spelling: `N/s`, `N/m`, `N/h` or `N/d` for a rate, and the record queue.lua stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PERIODS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RATE = re.compile(r"^\s*([1-9][0-9]*)\s*/\s*([smhd])\s*$")


class BadLimit(ValueError):
    """A limit that cannot be honoured as written; the message says why."""


@dataclass(frozen=True, slots=True)
class PluginLimit:
    concurrency: int | None = None  # tasks in flight at once (claimed, not ended), across organisations
    rate: str | None = None  # claims per period: "5/s", "100/h" ...

    def __post_init__(self) -> None:
        if self.concurrency is None and self.rate is None:
            raise BadLimit("a limit has a concurrency, a rate or both")
        if self.concurrency is not None and self.concurrency < 1:
            raise BadLimit("concurrency is at least 1")
        if self.rate is not None:
            rate_parts(self.rate)

    def encode(self) -> str:
        """queue.lua's form: "<concurrency>:<rate count>:<rate window ms>", 0 for none."""
        count, window = rate_parts(self.rate) if self.rate is not None else (0, 0)
        return f"{self.concurrency or 0}:{count}:{window}"

    @classmethod
    def decode(cls, stored: str) -> PluginLimit:
        concurrency, count, window = (int(part) for part in stored.split(":"))
        period = next(name for name, ms in PERIODS_MS.items() if ms == window) if count else None
        return cls(concurrency or None, f"{count}/{period}" if count else None)

    @property
    def window_ms(self) -> int:
        return rate_parts(self.rate)[1] if self.rate is not None else 0

    @property
    def count(self) -> int:
        return rate_parts(self.rate)[0] if self.rate is not None else 0


def rate_parts(rate: str) -> tuple[int, int]:
    """"5/s" -> (5, 1000): the count and the window in milliseconds."""
    match = _RATE.match(rate)
    if not match:
        raise BadLimit(f"a rate is N/s, N/m, N/h or N/d with N at least 1, not {rate!r}")
    return int(match.group(1)), PERIODS_MS[match.group(2)]


@dataclass(frozen=True, slots=True)
class LimitState:
    """A limited plugin now, in one queue."""

    plugin_id: str
    limit: PluginLimit
    in_flight: int  # claimed and not ended
    claimed_in_window: int  # claims within the rate's window (0 without a rate)
    queued: int

    @property
    def room(self) -> int:
        """How many more tasks the limit lets through now."""
        room = self.limit.concurrency - self.in_flight if self.limit.concurrency is not None else None
        if self.limit.rate is not None:
            by_rate = self.limit.count - self.claimed_in_window
            room = by_rate if room is None else min(room, by_rate)
        return max(0, room or 0)

    @property
    def held(self) -> int:
        """Queued tasks the limit holds back now: all of them while it has no room."""
        return self.queued if self.room == 0 else 0
