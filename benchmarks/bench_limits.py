"""Plugin limits: what a claim costs when limits are configured, beside the same claims with none, in
alternate rounds of the same run. A tenth of the claimed tasks are of limited plugins (with room)."""

from __future__ import annotations

import os
import uuid

from benchmarks.bench_queue import drop
from benchmarks.harness import Figure, Stopwatch, report
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.queues.limits import PluginLimit

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")
ROUNDS = 5
LIMITED_PLUGINS = 100


def tasks(count: int, start: int) -> list[BoefjeTask]:
    return [BoefjeTask(boefje={"id": f"paid-{n % LIMITED_PLUGINS}" if n % 10 == 0 else "dns-records"},
                       input_ooi=f"Hostname|internet|host{n}.example.com", organization=f"org{n % 10}")
            for n in range(start, start + count)]


def run(quick: bool = False) -> None:
    client = connect(REDIS_URL)
    per_round = (2_000 if quick else 10_000) // ROUNDS
    prefix = f"kat-bench-{uuid.uuid4().hex[:8]}"
    plain = PriorityQueue(client, "boefje", prefix=f"{prefix}-plain")
    limited = PriorityQueue(client, "boefje", prefix=f"{prefix}-limited")
    for n in range(LIMITED_PLUGINS):  # room for every task: the figure is the cost of the check
        limited.set_limit(f"paid-{n}", PluginLimit(concurrency=100_000, rate="1000000/s"))
    try:
        watch = Stopwatch()
        for round_number in range(ROUNDS):
            batch = tasks(per_round, round_number * per_round)
            plain.push_many([(task, 1) for task in batch])
            limited.push_many([(task, 1) for task in batch])
            with watch.timing("plain", per_round):
                claimed_plain = [plain.claim_one() for _ in range(per_round)]
            with watch.timing("limited", per_round):
                claimed_limited = [limited.claim_one() for _ in range(per_round)]
            assert all(claimed_plain) and all(claimed_limited), "a claim found nothing"
            for queue, claimed in ((plain, claimed_plain), (limited, claimed_limited)):
                for record in claimed:
                    queue.ack(record.id)  # type: ignore[union-attr]
        report(Figure(f"claim with {LIMITED_PLUGINS} plugin limits configured", watch.rate("limited"), "tasks/s",
                      watch.rate("plain"), "claim with none"))
    finally:
        drop(client, prefix)
