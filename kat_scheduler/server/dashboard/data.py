"""What the dashboard shows, as one JSON-ready document (also /dashboard/data).

Read from Redis in a bounded number of reads, whatever the queues hold: the counts the queues keep
per organisation, the head of each organisation's queue, the status of the claimed tasks (up to CLAIMED_READ), the
newest dead letters (up to DEAD_SHOWN), the beat leader's lease, the runners seen lately and the last
hour's samples. No read walks the queued tasks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kat_scheduler.context import AppContext
from kat_scheduler.kinds import KINDS
from kat_scheduler.leadership import Leadership
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories.queue_samples import QueueSample, QueueSamples
from kat_scheduler.repositories.runner_presence import RunnerPresence
from kat_scheduler.repositories.task_records import TaskRecord, ms_to_iso

HEAD_ORGANISATIONS = 10  # organisations whose queue heads are shown, in serving order
HEAD_TASKS = 5  # tasks shown per organisation
CLAIMED_READ = 500  # claimed tasks read to count dispatched and running per organisation
DEAD_SHOWN = 20


def gather(context: AppContext, runners: RunnerPresence) -> dict[str, Any]:
    now_ms = context.clock_ms()
    holder, ms_left = Leadership.of_beat(context.redis, context.settings.key_prefix).holder_and_ms_left()
    return {
        "now": ms_to_iso(now_ms),
        "key_prefix": context.settings.key_prefix,
        "beat": {"leader": holder, "lease_seconds_left": ms_left / 1000 if holder else None},
        "runners": [{"name": r.name, "how": r.how, "seen_seconds_ago": max(0, now_ms - r.seen_ms) / 1000,
                     "active": r.active, "processed": r.processed} for r in runners.recent()],
        "kinds": {kind: _kind(context, queue, now_ms) for kind, queue in context.queues.items()},
    }


def _kind(context: AppContext, queue: PriorityQueue, now_ms: int) -> dict[str, Any]:
    counts = queue.counts()
    oldest = queue.oldest_pushed_ms_by_organisation()
    claimed = queue.claimed_statuses(CLAIMED_READ)
    in_flight = queue.in_flight()
    by_status = Counter((organisation, status.value) for organisation, status in claimed)
    order = queue.serving_order(0, max(len(counts), 1))
    turn = {organisation: n for n, organisation in enumerate(order, 1)}
    organisations = sorted(set(counts) | {organisation for organisation, _ in by_status},
                           key=lambda org: (turn.get(org, len(turn) + 1), org))
    held = {state.plugin_id: state for state in queue.limit_states()}
    hand_off = context.settings.hand_off(queue.kind)
    schedules = context.schedules[queue.kind]
    return {
        "queued": sum(counts.values()),
        "dispatched": sum(n for (_, status), n in by_status.items() if status == "dispatched"),
        "running": sum(n for (_, status), n in by_status.items() if status == "running"),
        "in_flight": in_flight,
        "in_flight_read": len(claimed),  # below in_flight: the per-organisation split counts only these
        "oldest_wait_seconds": _wait(now_ms, min(oldest.values())) if oldest else None,
        "slots_in_use": queue.slots_in_use(),
        "slots": hand_off.slots or None,  # None: the runners' pool sizes
        "celery_queue": hand_off.celery_queue,
        "due_schedules": schedules.due_count(now_ms),
        "schedules": schedules.count(),
        "dead_letters": queue.dead_count(),
        "organisations": [{"organisation": org, "turn": turn.get(org), "queued": counts.get(org, 0),
                           "dispatched": by_status[org, "dispatched"], "running": by_status[org, "running"],
                           "oldest_wait_seconds": _wait(now_ms, oldest[org]) if org in oldest else None}
                          for org in organisations],
        "head": _head(queue, order[:HEAD_ORGANISATIONS], {p for p, state in held.items() if state.room == 0},
                      now_ms),
        "limits": [{"plugin": plugin, "concurrency": state.limit.concurrency, "rate": state.limit.rate,
                    "in_flight": state.in_flight, "room": state.room, "held": state.held}
                   for plugin, state in sorted(held.items())],
        "series": _series(QueueSamples(context.redis, context.settings.key_prefix, queue.kind).last_hour(now_ms)),
        "dead": [{"id": letter.record.id, "organisation": letter.record.organisation,
                  "plugin": letter.record.plugin_id, "ooi": letter.record.ooi or None,
                  "reason": letter.record.reason or None, "dead_seconds": _wait(now_ms, letter.died_ms)}
                 for letter in queue.dead_letters_since(DEAD_SHOWN)],
    }


def _head(queue: PriorityQueue, organisations: list[str], held_plugins: set[str], now_ms: int) -> list[dict[str, Any]]:
    """Each organisation's next tasks in the order claims take them, with the ranker's reason for each score."""
    ranker = KINDS[queue.kind].ranking()
    heads = list(queue.queue_heads(organisations, HEAD_TASKS).items())
    every = [record for _, records in heads for record in records]
    last_runs = dict(zip((r.hash for r in every), queue.records.last_runs_ms([r.hash for r in every]), strict=True))
    return [{"organisation": org, "turn": turn, "tasks": [_queued(record, ranker.explain(
                record.score, record.created_ms, last_runs.get(record.hash)), record.plugin_id in held_plugins,
                now_ms) for record in records]}
            for turn, (org, records) in enumerate(heads, 1)]


def _queued(record: TaskRecord, why: str, held: bool, now_ms: int) -> dict[str, Any]:
    return {"id": record.id, "plugin": record.plugin_id, "ooi": record.ooi or None, "score": record.score,
            "why": why + ("; held by its plugin's limit" if held else ""), "held_by_limit": held,
            "attempts": record.attempts, "waiting_seconds": _wait(now_ms, record.created_ms)}


def _series(samples: list[QueueSample]) -> list[dict[str, Any]]:
    """Depth and in-flight at each sample; throughput (tasks ended per minute) since the sample before."""
    points = []
    for before, sample in zip([None, *samples], samples, strict=False):
        per_minute = None
        if before is not None and sample.at_ms > before.at_ms:
            per_minute = max(0, sample.ended - before.ended) * 60_000 / (sample.at_ms - before.at_ms)
        points.append({"at": ms_to_iso(sample.at_ms), "at_ms": sample.at_ms, "queued": sample.queued,
                       "in_flight": sample.in_flight, "ended_per_minute": per_minute})
    return points


def task_document(record: TaskRecord) -> dict[str, Any]:
    """A task's page: its record, its history of statuses and its runner."""
    return {"task": record.to_document(), "plugin": record.plugin_id, "ooi": record.ooi or None,
            "reason": record.reason or None, "expired_leases": record.expired_leases, "runner": record.runner,
            "history": [{"at": ms_to_iso(change.at_ms), "status": change.status, "note": change.note or None}
                        for change in record.history()]}


def _wait(now_ms: int, since_ms: int) -> float:
    return max(0, now_ms - since_ms) / 1000

