from kat_scheduler.durations import duration
from kat_scheduler.rankers.base import Ranker, RankingContext, register

RESCAN_MIN_DELAY_MS = 60_000  # a rescan always stands at least a minute behind a first scan
RESCAN_MAX_DELAY_MS = 3_600_000  # and at most an hour


@register
class BoefjeRanker(Ranker):
    """First scans before rescans; among rescans, the longer overdue, the sooner.

    A rescan's delay shrinks linearly from RESCAN_MAX_DELAY_MS (just due) to RESCAN_MIN_DELAY_MS
    (overdue by a whole interval or more)."""

    name = "boefje"
    max_delay_ms = RESCAN_MAX_DELAY_MS

    def delay_ms(self, context: RankingContext) -> int:
        if context.last_run_ms is None:
            return 0
        due_ms = context.last_run_ms + context.interval_seconds * 1000
        overdue_ms = max(0, context.now_ms - due_ms)
        interval_ms = max(1, context.interval_seconds * 1000)
        lateness = min(1.0, overdue_ms / interval_ms)
        span = RESCAN_MAX_DELAY_MS - RESCAN_MIN_DELAY_MS
        return RESCAN_MIN_DELAY_MS + round(span * (1.0 - lateness))

    def explain_delay(self, delay_ms: int, pushed_ms: int, last_run_ms: int | None) -> str:
        """Undo delay_ms: its delay says how late the rescan was, as a share of the plugin's interval; the
        time since the last run is that interval plus the lateness."""
        if delay_ms == 0:
            return "first scan: never run on this object"
        span = RESCAN_MAX_DELAY_MS - RESCAN_MIN_DELAY_MS
        lateness = min(1.0, max(0.0, 1.0 - (delay_ms - RESCAN_MIN_DELAY_MS) / span))
        behind = f"{duration(round(delay_ms / 1000))} behind first scans"
        if last_run_ms is None or lateness >= 1.0:
            return f"rescan, overdue by a whole interval or more; {behind}" if lateness >= 1.0 else f"rescan, {behind}"
        overdue_ms = lateness * max(0, pushed_ms - last_run_ms) / (1.0 + lateness)
        return f"rescan, overdue by {duration(round(overdue_ms / 1000))}; {behind}"
