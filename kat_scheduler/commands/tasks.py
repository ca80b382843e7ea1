"""`kat-scheduler tasks`, `tasks show ID` and `cancel ID...`: the task records.

Listing uses the API's task index (kat_scheduler/server/task_index.py), so the CLI and the API filter
alike: newest first, and filters on organisation or status read at most its SCAN_LIMIT records per kind.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kat_scheduler.commands.common import CommandError, ExitCode, emit_json, error, iso, session, table
from kat_scheduler.config import Settings
from kat_scheduler.kinds import KINDS
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import Change, Outcome
from kat_scheduler.repositories.task_records import TaskRecord
from kat_scheduler.server.task_index import TaskQuery, find, list_tasks


def as_document(record: TaskRecord) -> dict[str, Any]:
    return record.to_task().model_dump(mode="json")


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise CommandError(ExitCode.USAGE, "--limit must be at least 1")
    query = TaskQuery(kinds=[args.kind] if args.kind else list(KINDS),
                      organisations=frozenset({args.org}) if args.org else None,
                      status=TaskStatus(args.status) if args.status else None, limit=args.limit)
    with session(settings) as context:
        count, records = list_tasks(context, query)
    if args.json:
        emit_json({"count": count, "results": [as_document(record) for record in records]})
    elif records:
        rows = [(iso(r.created_ms), r.kind, r.status.value, r.organisation, r.plugin_id, r.score, r.id)
                for r in records]
        print(table(["created", "kind", "status", "organisation", "plugin", "score", "task id"], rows))
        if count > len(records):
            print(f"({len(records)} of {count} shown; --limit to see more)")
    else:
        print("no tasks match")
    return ExitCode.OK if records else ExitCode.EMPTY


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    with session(settings) as context:
        found = find(context, args.task_id)
    if found is None:
        raise CommandError(ExitCode.NOT_FOUND, f"no task {args.task_id} (records of finished tasks expire "
                           "after SCHEDULER_TASK_RETENTION)")
    _, record = found
    document = as_document(record)
    if args.json:
        emit_json(document)
        return ExitCode.OK
    for name in ("id", "type", "status", "organisation", "priority", "attempts", "hash", "schedule_id",
                 "created_at", "modified_at"):
        print(f"{name + ':':<14}{document.get(name)}")
    if record.reason:
        print(f"{'reason:':<14}{record.reason}")
    print("data:")
    print(json.dumps(document["data"], indent=2))
    return ExitCode.OK


def cancel_command(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel queued tasks; dispatched or running ones are refused (their runner owns them)."""
    outcomes: dict[str, Outcome] = {}
    with session(settings) as context:
        for task_id in dict.fromkeys(args.task_ids):
            found = find(context, task_id)
            outcomes[task_id] = Change.UNKNOWN if found is None else found[0].cancel(task_id)[0]
    if args.json:
        emit_json({"results": {task_id: outcome.value for task_id, outcome in outcomes.items()}})
    for task_id, outcome in outcomes.items():
        if args.json:
            continue
        if outcome is TaskStatus.CANCELLED:
            print(f"{task_id} cancelled")
        elif outcome is Change.UNKNOWN:
            error(f"{task_id}: no such task")
        else:
            error(f"{task_id}: not cancelled, it is {outcome.value} (only queued tasks can be cancelled)")
    if Change.UNKNOWN in outcomes.values():
        return ExitCode.NOT_FOUND
    if any(outcome is not TaskStatus.CANCELLED for outcome in outcomes.values()):
        return ExitCode.REFUSED
    return ExitCode.OK
