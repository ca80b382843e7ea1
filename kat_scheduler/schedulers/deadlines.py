"""When recurring work comes round again: the plugin's cron, else its interval, else the grace
period with a random jitter (so a day's first scans do not all come back in the same minute)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from croniter import croniter

from kat_scheduler.models import Plugin


def valid_cron(expression: str) -> bool:
    return bool(croniter.is_valid(expression))


def next_cron(expression: str, after: datetime) -> datetime:
    moment: datetime = croniter(expression, after.astimezone(UTC)).get_next(datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def next_deadline(
    plugin: Plugin,
    after: datetime,
    grace_period_seconds: int,
    jitter_seconds: int,
    rng: random.Random | None = None,
) -> datetime:
    if plugin.cron and valid_cron(plugin.cron):
        return next_cron(plugin.cron, after)
    if plugin.interval:
        return after + timedelta(minutes=plugin.interval)
    jitter = (rng or random).randint(0, jitter_seconds) if jitter_seconds else 0
    return after + timedelta(seconds=grace_period_seconds + jitter)


def freshness_seconds(plugin: Plugin, grace_period_seconds: int) -> int:
    """How long a run's result stays fresh: the plugin's interval, else the grace period."""
    return plugin.interval * 60 if plugin.interval else grace_period_seconds
