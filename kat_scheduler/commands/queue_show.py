"""`kat-scheduler queue show KIND`: what the queue will serve next, with the scores.

Organisations take turns (docs/fairness.md), so the head of the queue is shown per organisation, in
the order their turns come; within one, lower scores first (negative: a manual run). A task whose
plugin's limit has no room now is marked "held by limit": claims pass it by until the limit opens.
"""

from __future__ import annotations

import argparse
from typing import Any

from kat_scheduler.commands.common import CommandError, ExitCode, emit_json, iso, session, table
from kat_scheduler.config import Settings
from kat_scheduler.durations import duration
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories.task_records import TaskRecord


def task_row(record: TaskRecord, now_ms: int, held: set[str]) -> dict[str, Any]:
    return {"id": record.id, "score": record.score, "plugin": record.plugin_id, "ooi": record.ooi or None,
            "attempts": record.attempts, "created_at": iso(record.created_ms),
            "waiting_seconds": max(0, now_ms - record.created_ms) / 1000,
            "held_by_limit": record.plugin_id in held}


def gather(queue: PriorityQueue, organisation: str | None, limit: int, organisations: int) -> dict[str, Any]:
    counts = queue.counts()
    now_ms = queue.clock_ms()
    order = queue.serving_order(0, max(len(counts), 1))
    chosen = [organisation] if organisation is not None else order[:organisations]
    held = {state.plugin_id for state in queue.limit_states() if state.room == 0}
    shown = []
    for org in chosen:
        records = queue.list_queued(org, 0, limit)
        turn = order.index(org) + 1 if org in order else None
        shown.append({"organisation": org, "turn": turn, "queued": counts.get(org, 0),
                      "tasks": [task_row(record, now_ms, held) for record in records]})
    return {"kind": queue.kind, "queued": sum(counts.values()), "organisations_with_work": len(counts),
            "organisations": shown}


def render(document: dict[str, Any]) -> str:
    lines = [f"{document['kind']} queue: {document['queued']} queued in {document['organisations_with_work']} "
             "organisation(s), in serving order"]
    for org in document["organisations"]:
        turn = f"turn {org['turn']}" if org["turn"] else "no turn (nothing queued)"
        lines += ["", f"{org['organisation']}: {org['queued']} queued, {turn}"]
        if org["tasks"]:
            rows = [(t["score"], t["id"], t["plugin"], t["ooi"] or "-", t["attempts"],
                     duration(t["waiting_seconds"]), "held by limit" if t["held_by_limit"] else "")
                    for t in org["tasks"]]
            lines.append(table(["score", "task id", "plugin", "ooi", "attempts", "waiting", ""], rows, indent="  "))
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1 or args.orgs < 1:
        raise CommandError(ExitCode.USAGE, "--limit and --orgs must be at least 1")
    with session(settings) as context:
        document = gather(context.queues[args.kind], args.org, args.limit, args.orgs)
    if args.json:
        emit_json(document)
    else:
        print(render(document))
    shown_any = any(org["tasks"] for org in document["organisations"])
    return ExitCode.OK if shown_any else ExitCode.EMPTY
