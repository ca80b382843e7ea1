"""From OpenKAT's priority numbers to queue scores (docs/api.md, "Priorities").

OpenKAT serves a lower number first and Rocky pushes manual runs with priority 1. Our scores are
wall-clock milliseconds, lower first, with manual tasks below zero (docs/ranking.md). So:

- priority <= 1: a manual run, scored by the ranker as manual (before all automatic work);
- priority absent: automatic, scored by the queue's ranker as the beat would score it;
- priority p >= 2: automatic, standing (p - 2) seconds behind a task pushed now, at most
  MAX_OFFSET_SECONDS, so nothing pushed through the API can starve later work for longer than that.

The Task the API answers carries the score as its `priority`: lower is still served first, so clients
compare priorities as they always did.
"""

from __future__ import annotations

from kat_scheduler.kinds import KINDS
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.rankers import RankingContext

MANUAL_PRIORITY = 1
MAX_OFFSET_SECONDS = 3600


def score_for(queue: PriorityQueue, priority: int | None, identity_hash: str, now_ms: int,
              grace_period_seconds: int) -> int:
    ranker = KINDS[queue.kind].ranking()
    if priority is not None and priority <= MANUAL_PRIORITY:
        return ranker.rank(RankingContext(now_ms=now_ms, manual=True))
    if priority is None:
        last_run = queue.records.last_run_ms(identity_hash)
        return ranker.rank(RankingContext(now_ms=now_ms, last_run_ms=last_run,
                                          interval_seconds=grace_period_seconds))
    return now_ms + min(priority - 2, MAX_OFFSET_SECONDS) * 1000
