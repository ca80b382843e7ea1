"""`kat-scheduler dead-letters [KIND] list|requeue ID|drop ID`: tasks that ran out of attempts.

A dead letter is a task whose lease expired SCHEDULER_MAX_ATTEMPTS times (docs/queue.md). Requeue
gives it a fresh attempt count at its old place; drop lets its record expire after the retention period.
"""

from __future__ import annotations

import argparse
from typing import Any

from kat_scheduler.commands.common import CommandError, ExitCode, duration, emit_json, iso, session, table
from kat_scheduler.config import Settings
from kat_scheduler.context import KINDS, AppContext
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import Change, PriorityQueue

ACTIONS = ("list", "requeue", "drop")


def parse_words(words: list[str]) -> tuple[str | None, str, str | None]:
    """[KIND] [list | requeue ID | drop ID] -> (kind, action, task id)."""
    rest = list(words)
    kind = rest.pop(0) if rest and rest[0] in KINDS else None
    action = rest.pop(0) if rest else "list"
    if action not in ACTIONS:
        raise CommandError(ExitCode.USAGE, f"dead-letters: {action!r} is neither a kind ({', '.join(KINDS)}) nor "
                           f"an action ({', '.join(ACTIONS)})")
    if action == "list":
        if rest:
            raise CommandError(ExitCode.USAGE, "dead-letters list takes no task id")
        return kind, action, None
    if len(rest) != 1:
        raise CommandError(ExitCode.USAGE, f"dead-letters {action} takes exactly one task id")
    return kind, action, rest[0]


def listing(queue: PriorityQueue, limit: int) -> list[dict[str, Any]]:
    """The oldest dead letters first, with when each died."""
    now_ms = queue.clock_ms()
    return [{"id": r.id, "kind": r.kind, "organisation": r.organisation, "plugin": r.plugin_id,
             "ooi": r.ooi or None, "attempts": r.attempts, "expired_leases": r.expired_leases,
             "reason": r.reason or None,
             "dead_since": iso(letter.died_ms), "dead_seconds": max(0, now_ms - letter.died_ms) / 1000}
            for letter in queue.dead_letters_since(limit) for r in (letter.record,)]


def holder_queue(context: AppContext, kinds: list[str], task_id: str) -> PriorityQueue:
    for kind in kinds:
        queue = context.queues[kind]
        if queue.is_dead(task_id):
            return queue
    raise CommandError(ExitCode.NOT_FOUND, f"no dead letter {task_id} (`kat-scheduler dead-letters list` shows them)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    kind, action, task_id = parse_words(args.words)
    kinds = [kind] if kind else list(KINDS)
    if args.limit < 1:
        raise CommandError(ExitCode.USAGE, "--limit must be at least 1")
    with session(settings) as context:
        if action == "list":
            found = [letter for k in kinds for letter in listing(context.queues[k], args.limit)]
            if args.json:
                emit_json({"count": len(found), "results": found})
            elif found:
                rows = [(d["kind"], d["organisation"], d["plugin"], d["ooi"] or "-", d["expired_leases"],
                         duration(d["dead_seconds"]), d["id"]) for d in found]
                print(table(["kind", "organisation", "plugin", "ooi", "expired leases", "dead for", "task id"], rows))
            else:
                print("no dead letters")
            return ExitCode.OK if found else ExitCode.EMPTY
        assert task_id is not None
        queue = holder_queue(context, kinds, task_id)
        if action == "requeue":
            requeue = queue.requeue_dead(task_id)
            outcome, holder = requeue.outcome, requeue.holder
        else:
            outcome, holder = queue.drop_dead(task_id), None
    if args.json:
        emit_json({"id": task_id, "kind": queue.kind,
                   "outcome": f"{outcome.value}:{holder}" if holder else outcome.value})
    if outcome in (TaskStatus.QUEUED, Change.DROPPED):
        if not args.json:
            print(f"{task_id} {'requeued' if outcome is TaskStatus.QUEUED else 'dropped'}")
        return ExitCode.OK
    if outcome is Change.DUPLICATE:
        raise CommandError(ExitCode.REFUSED, f"{task_id} not requeued: task {holder} holds the same work now; "
                           f"drop this dead letter instead (`kat-scheduler dead-letters drop {task_id}`)")
    raise CommandError(ExitCode.NOT_FOUND, f"{task_id}: {outcome.value}")
