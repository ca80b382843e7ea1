"""`kat-scheduler dead-letters [KIND|events] list|requeue ID|drop ID`: what could not be done.

Two kinds of dead letters, shown side by side:
- tasks whose lease expired SCHEDULER_MAX_ATTEMPTS times (docs/queue.md). Requeue gives one a fresh
  count at its old place; drop lets its record expire after the retention period;
- events a listener gave up on, in RabbitMQ's `<queue>.dead` queues with the reason in their headers
  (connectors/listeners/dead_events.py). Requeue sends one (or `all`) back to the queue it came from;
  drop removes it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pika.exceptions import AMQPError

from kat_scheduler.commands.common import CommandError, ExitCode, emit_json, iso, session, table
from kat_scheduler.config import Settings
from kat_scheduler.connectors.listeners.dead_events import DeadEvents
from kat_scheduler.connectors.listeners.openkat import RAW_FILE_RECEIVED, SCAN_PROFILE_MUTATIONS
from kat_scheduler.context import AppContext
from kat_scheduler.durations import duration
from kat_scheduler.kinds import KINDS
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import Change, PriorityQueue

ACTIONS = ("list", "requeue", "drop")
EVENTS = "events"  # the word for the listeners' dead events, where a kind of task could stand
EVENT_QUEUES = [SCAN_PROFILE_MUTATIONS, RAW_FILE_RECEIVED]


def parse_words(words: list[str]) -> tuple[str | None, str, str | None]:
    """[KIND | events] [list | requeue ID | drop ID] -> (kind or "events", action, id)."""
    rest = list(words)
    kind = rest.pop(0) if rest and rest[0] in (*KINDS, EVENTS) else None
    action = rest.pop(0) if rest else "list"
    if action not in ACTIONS:
        raise CommandError(ExitCode.USAGE, f"dead-letters: {action!r} is neither a kind ({', '.join(KINDS)}, "
                           f"{EVENTS}) nor an action ({', '.join(ACTIONS)})")
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


def holder_queue(context: AppContext, kinds: list[str], task_id: str) -> PriorityQueue | None:
    """The queue whose dead letters hold this task, or None."""
    return next((context.queues[kind] for kind in kinds if context.queues[kind].is_dead(task_id)), None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    kind, action, wanted = parse_words(args.words)
    if args.limit < 1:
        raise CommandError(ExitCode.USAGE, "--limit must be at least 1")
    events = DeadEvents(settings.queue_uri, args.queue or EVENT_QUEUES)
    if kind == EVENTS:
        return _events(events, action, wanted, args)
    kinds = [kind] if kind else list(KINDS)
    with session(settings) as context:
        if action == "list":
            return _list(context, kinds, events if kind is None else None, args)
        assert wanted is not None
        queue = holder_queue(context, kinds, wanted)
        if queue is None and kind is None:  # not a task: perhaps an event
            return _events(events, action, wanted, args)
        if queue is None:
            raise CommandError(ExitCode.NOT_FOUND, f"no dead letter {wanted} (`kat-scheduler dead-letters list` "
                               "shows them)")
        if action == "requeue":
            requeue = queue.requeue_dead(wanted)
            outcome, holder = requeue.outcome, requeue.holder
        else:
            outcome, holder = queue.drop_dead(wanted), None
    if args.json:
        emit_json({"id": wanted, "kind": queue.kind,
                   "outcome": f"{outcome.value}:{holder}" if holder else outcome.value})
    if outcome in (TaskStatus.QUEUED, Change.DROPPED):
        if not args.json:
            print(f"{wanted} {'requeued' if outcome is TaskStatus.QUEUED else 'dropped'}")
        return ExitCode.OK
    if outcome is Change.DUPLICATE:
        raise CommandError(ExitCode.REFUSED, f"{wanted} not requeued: task {holder} holds the same work now; "
                           f"drop this dead letter instead (`kat-scheduler dead-letters drop {wanted}`)")
    raise CommandError(ExitCode.NOT_FOUND, f"{wanted}: {outcome.value}")


def _list(context: AppContext, kinds: list[str], events: DeadEvents | None, args: argparse.Namespace) -> int:
    """Task dead letters, and (when `events`) the dead events beside them; RabbitMQ being away is said,
    not fatal."""
    found = [letter for k in kinds for letter in listing(context.queues[k], args.limit)]
    dead_events: list[dict[str, Any]] = []
    events_problem = None
    if events is not None:
        try:
            dead_events = [event.to_document() for event in events.peek(args.limit)]
        except AMQPError as error:
            events_problem = f"RabbitMQ ({type(error).__name__}): dead events not shown"
    if args.json:
        emit_json({"count": len(found), "results": found, "events": dead_events, "events_problem": events_problem})
    else:
        _print_tasks(found)
        if events is not None:
            _print_events(dead_events)
        if events_problem:
            print(f"kat-scheduler: {events_problem}", file=sys.stderr)
    return ExitCode.OK if found or dead_events else ExitCode.EMPTY


def _print_tasks(found: list[dict[str, Any]]) -> None:
    if found:
        rows = [(d["kind"], d["organisation"], d["plugin"], d["ooi"] or "-", d["expired_leases"],
                 duration(d["dead_seconds"]), d["id"]) for d in found]
        print(table(["kind", "organisation", "plugin", "ooi", "expired leases", "dead for", "task id"], rows))
    else:
        print("no dead-lettered tasks")


def _print_events(found: list[dict[str, Any]]) -> None:
    if found:
        rows = [(d["queue"], d["organisation"] or "-", d["dead_lettered_at"] or "-", d["reason"][:80], d["id"])
                for d in found]
        print(table(["event queue", "organisation", "dead since", "reason", "event id"], rows))
    else:
        print("no dead events")


def _events(events: DeadEvents, action: str, wanted: str | None, args: argparse.Namespace) -> int:
    try:
        if action == "list":
            found = [event.to_document() for event in events.peek(args.limit)]
            if args.json:
                emit_json({"count": len(found), "results": found})
            else:
                _print_events(found)
            return ExitCode.OK if found else ExitCode.EMPTY
        assert wanted is not None
        done = events.replay(wanted) if action == "requeue" else events.drop(wanted)
    except AMQPError as error:
        raise CommandError(ExitCode.UNAVAILABLE, f"RabbitMQ at QUEUE_URI: {type(error).__name__}") from None
    if not done:
        raise CommandError(ExitCode.NOT_FOUND, f"no dead letter {wanted} (`kat-scheduler dead-letters list` "
                           "shows them)")
    verb = "replayed" if action == "requeue" else "dropped"
    if args.json:
        emit_json({"outcome": verb, "events": [event.to_document() for event in done]})
    else:
        for event in done:
            print(f"{event.id} {verb}" + (f" to {event.queue}" if action == "requeue" else ""))
    return ExitCode.OK
