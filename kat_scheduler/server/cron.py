"""Cron expressions of schedules: checked with croniter, so a bad one is a 400, not a beat that fails."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter

from kat_scheduler.server.errors import ApiError


def next_run(expression: str, after: datetime) -> datetime:
    """The first time after `after` that `expression` names; 400 when it names none."""
    try:
        if croniter.is_valid(expression):
            moment: datetime = croniter(expression, after).get_next(datetime)
            return moment
    except Exception as error:  # croniter raises several types, e.g. for dates that never come (30 Feb)
        raise ApiError(400, f"schedule: no time matches {expression!r} ({type(error).__name__})",
                       field="schedule") from None
    raise ApiError(400, f"schedule: {expression!r} is not a valid cron expression", field="schedule")
