"""What a ranker is: a function from what we know about a task to its score.

Scores are milliseconds on the wall clock, lower first: a task's score is the moment it "should
have been" served. Because every score is its push time plus a bounded delay, a task that waits long
enough is ahead of anything pushed later; nothing starves. Manual tasks are pushed MANUAL_LEAD_MS
into the past, which makes their score negative and puts them before all other work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

MANUAL_LEAD_MS = 10**13  # about 317 years: a manual task's score is always below zero


@dataclass(frozen=True, slots=True)
class RankingContext:
    now_ms: int
    manual: bool = False
    last_run_ms: int | None = None  # end of the last finished run of this work identity, if any
    interval_seconds: int = 86400  # how long a result stays fresh: the plugin's interval or the grace period


class Ranker(ABC):
    """Scores one kind of task. Subclasses only decide the delay of automatic tasks."""

    name: str
    uses_last_run: ClassVar[bool] = True  # whether its queue keeps each identity's last run (P:lastrun)

    def rank(self, context: RankingContext) -> int:
        if context.manual:
            return context.now_ms - MANUAL_LEAD_MS
        delay = self.delay_ms(context)
        if not 0 <= delay <= self.max_delay_ms:
            raise ValueError(f"{self.name} ranker gave delay {delay} ms outside [0, {self.max_delay_ms}]")
        return context.now_ms + delay

    def explain(self, score: int, pushed_ms: int, last_run_ms: int | None = None) -> str:
        """Why a queued task has its score, in words for the dashboard. `pushed_ms`: when it was pushed;
        `last_run_ms`: the end of its work's last run, when known."""
        if score < 0:
            return "manual run: ahead of all automatic work"
        return self.explain_delay(max(0, score - pushed_ms), pushed_ms, last_run_ms)

    def explain_delay(self, delay_ms: int, pushed_ms: int, last_run_ms: int | None) -> str:
        """The words for an automatic task's delay; rankers whose delays mean more say so."""
        if delay_ms == 0:
            return "first in, first out"
        return f"{delay_ms // 1000} s behind work pushed at the same moment"

    @property
    @abstractmethod
    def max_delay_ms(self) -> int:
        """The largest delay this ranker gives: the bound on how long later work can overtake a task."""

    @abstractmethod
    def delay_ms(self, context: RankingContext) -> int:
        """How far behind a task pushed at the same moment with delay 0 this task should stand."""


RANKERS: dict[str, type[Ranker]] = {}


def register(ranker: type[Ranker]) -> type[Ranker]:
    """Make a ranker available by its name (a class decorator)."""
    RANKERS[ranker.name] = ranker
    return ranker
