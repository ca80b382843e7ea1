"""`kat-scheduler schedules`: the recurring work, all of it or what is due now.

Without --due: newest first; with --due: enabled schedules whose deadline has passed, earliest first
(the order the beat takes them). An organisation filter reads at most SCAN_LIMIT schedules per kind.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from kat_scheduler.commands.common import CommandError, ExitCode, emit_json, session, table
from kat_scheduler.config import Settings
from kat_scheduler.context import AppContext
from kat_scheduler.kinds import KINDS
from kat_scheduler.models import Schedule
from kat_scheduler.repositories import ScheduleRepository

SCAN_LIMIT = 20_000
CHUNK = 1000


def _scan(repository: ScheduleRepository, due_before_ms: int | None, wanted: int) -> Iterator[Schedule]:
    if due_before_ms is not None:
        yield from repository.due(due_before_ms, wanted)
        return
    for start in range(0, min(wanted, SCAN_LIMIT), CHUNK):
        batch = repository.list(start, CHUNK)
        yield from batch
        if len(batch) < CHUNK:
            return


def select(context: AppContext, kinds: list[str], organisation: str | None, due: bool, limit: int) -> list[Schedule]:
    now_ms = context.clock_ms()
    wanted = limit if organisation is None else SCAN_LIMIT
    found: list[Schedule] = []
    for kind in kinds:
        matched = [s for s in _scan(context.schedules[kind], now_ms if due else None, wanted)
                   if organisation is None or s.organisation == organisation]
        found += matched[:limit]
    if due:
        found.sort(key=lambda s: (s.deadline_at is None, s.deadline_at, s.id))
    else:
        found.sort(key=lambda s: (s.created_at, s.id), reverse=True)
    return found[:limit]


def describe_work(schedule: Schedule) -> str:
    """Its plugin (where the kind's payload names it) and, when there is one, its object."""
    found: Any = schedule.data
    kind = KINDS.get(schedule.scheduler_id)
    for part in kind.plugin_path if kind else ():
        found = found.get(part) if isinstance(found, dict) else None
    plugin = found if isinstance(found, str) else "?"
    ooi = schedule.data.get("input_ooi")
    return f"{plugin} on {ooi}" if ooi else plugin


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise CommandError(ExitCode.USAGE, "--limit must be at least 1")
    with session(settings) as context:
        found = select(context, [args.kind] if args.kind else list(KINDS), args.org, args.due, args.limit)
    if args.json:
        emit_json({"count": len(found), "results": [s.model_dump(mode="json") for s in found]})
    elif found:
        rows = [(s.scheduler_id, s.organisation, "yes" if s.enabled else "no", s.schedule or "-",
                 s.deadline_at.isoformat(timespec="seconds") if s.deadline_at else "-", describe_work(s), s.id)
                for s in found]
        print(table(["kind", "organisation", "enabled", "cron", "next run", "work", "schedule id"], rows))
    else:
        print("no schedules are due" if args.due else "no schedules match")
    return ExitCode.OK if found else ExitCode.EMPTY
