"""Durations in words for people (the CLI, the dashboard, a ranker's explanation): 45s, 3m05s, 2h07m."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """A wait or lease for people: 45s, 3m05s, 2h07m, 3d04h."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.1f}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
