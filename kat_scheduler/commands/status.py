"""`kat-scheduler status`: the whole scheduler on one screen, read from Redis.

Who leads the beats and for how long, the dispatchers' runner slots in use, and per kind the queue
depth (per organisation too), tasks in flight, dead letters, the longest wait and the due schedules.
"""

from __future__ import annotations

import argparse
from typing import Any

from kat_scheduler.commands.common import ExitCode, emit_json, iso, session, table
from kat_scheduler.config import Settings
from kat_scheduler.context import AppContext
from kat_scheduler.durations import duration
from kat_scheduler.leadership import Leadership
from kat_scheduler.metrics import QueueFigures, read_figures
from kat_scheduler.queues.errors import redacted_url

NO_DISPATCHER = ("no dispatcher seen (dispatchers keep no presence in Redis; "
                 "the slots in use below are what they forwarded)")


def gather(context: AppContext) -> dict[str, Any]:
    """The status as one document (also the --json output)."""
    holder, ms_left = Leadership.of_beat(context.redis, context.settings.key_prefix).holder_and_ms_left()
    queues: dict[str, Any] = {}
    for kind, queue in context.queues.items():
        figures: QueueFigures = read_figures(queue)
        queues[kind] = {
            "queued": figures.size,
            "by_organisation": dict(sorted(figures.depth.items())),
            "in_flight": figures.in_flight,
            "slots_in_use": figures.slots_in_use,
            "dead_letters": figures.dead_letters,
            "oldest_queued_at": iso(figures.oldest_queued_ms),
            "oldest_age_seconds": figures.oldest_age_seconds if figures.oldest_queued_ms is not None else None,
            "due_schedules": context.schedules[kind].due_count(figures.now_ms),
            "schedules": context.schedules[kind].count(),
        }
    return {
        "redis": redacted_url(context.settings.redis_url),
        "key_prefix": context.settings.key_prefix,
        "beat": {"leader": holder, "lease_seconds_left": ms_left / 1000 if holder else None},
        "dispatchers": {"seen": False, "note": NO_DISPATCHER},
        "queues": queues,
    }


def render(status: dict[str, Any]) -> str:
    beat = status["beat"]
    leader = (f"{beat['leader']} (lease {duration(beat['lease_seconds_left'])} left)" if beat["leader"]
              else "none: no beat holds the leader lease (is `celery -A kat_scheduler beat` running?)")
    lines = [f"Redis {status['redis']}, key prefix {status['key_prefix']!r}",
             f"beat leader:  {leader}",
             f"dispatchers:  {status['dispatchers']['note']}", ""]
    rows = [(kind, q["queued"], q["in_flight"], q["slots_in_use"], q["dead_letters"],
             duration(q["oldest_age_seconds"]), f"{q['due_schedules']} of {q['schedules']}")
            for kind, q in status["queues"].items()]
    lines.append(table(["kind", "queued", "in flight", "slots in use", "dead letters", "oldest wait",
                        "due schedules"], rows))
    for kind, q in status["queues"].items():
        if q["by_organisation"]:
            lines += ["", f"{kind} queued per organisation:",
                      table(["organisation", "queued"], list(q["by_organisation"].items()), indent="  ")]
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with session(settings) as context:
        status = gather(context)
    if args.json:
        emit_json(status)
    else:
        print(render(status))
    return ExitCode.OK
