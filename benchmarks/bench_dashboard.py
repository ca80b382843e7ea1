"""The dashboard's data endpoint with a big queue: 1,000,000 queued boefje tasks over 100 organisations
(100,000 with --quick), some thousands in flight, dead letters and an hour of samples, served by
`kat-scheduler api` in a process of its own and loaded by wrk over one keep-alive connection, beside the
bare endpoint of the same server stack (benchmarks/bare_api.py) in alternating rounds.

Figures: p50 and p99 of GET /dashboard/data, each as a ratio of the bare endpoint's. Target: p99 under
50 ms, which holds only while the page reads a bounded part of the queue, whatever its size.
"""

from __future__ import annotations

import statistics
import time
import uuid

from benchmarks.bench_api import REDIS_URL, Load, servers, wrk
from benchmarks.bench_queue import drop, tasks
from benchmarks.harness import Figure, report
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.repositories.queue_samples import KEPT, SAMPLE_EVERY_SECONDS, QueueSample, QueueSamples

ORGANISATIONS = 100
IN_FLIGHT = 5_000
DEAD = 50
TARGET_P99_MS = 50.0
BATCH = 20_000


def seed(queue: PriorityQueue, samples: QueueSamples, queued: int) -> None:
    now = int(time.time() * 1000)
    for start in range(0, queued + IN_FLIGHT + DEAD, BATCH):
        count = min(BATCH, queued + IN_FLIGHT + DEAD - start)
        queue.push_many((task, now + n) for n, task in enumerate(tasks(count, orgs=ORGANISATIONS, start=start)))
    queue.claim(DEAD, lease_seconds=0.001)  # max_attempts=1: the first reap after 1 ms dead-letters them
    deadline = time.monotonic() + 10
    while queue.dead_count() < DEAD and time.monotonic() < deadline:
        queue.reap()
    queue.claim(IN_FLIGHT)
    for n in range(KEPT):
        samples.add(QueueSample(now - (KEPT - n) * SAMPLE_EVERY_SECONDS * 1000, queued, IN_FLIGHT, n * 10))


def run(quick: bool = False) -> None:
    queued = 100_000 if quick else 1_000_000
    seconds, rounds = (2, 1) if quick else (4, 3)
    client = connect(REDIS_URL)
    prefix = f"kat-bench-dashboard-{uuid.uuid4().hex[:8]}"
    try:
        queue = PriorityQueue(client, "boefje", prefix=prefix, max_attempts=1)
        started = time.perf_counter()
        seed(queue, QueueSamples(client, prefix, "boefje"), queued)
        print(f"seeded {queue.size():,} queued, {queue.in_flight():,} in flight and {queue.dead_count()} dead "
              f"letters over {ORGANISATIONS} organisations in {time.perf_counter() - started:.0f} s", flush=True)
        with servers(prefix) as (api, bare):
            ours: list[Load] = []
            reference: list[Load] = []
            for _ in range(rounds):
                reference.append(wrk(f"{bare}/bare", 1, seconds, "post.lua"))
                ours.append(wrk(f"{api}/dashboard/data", 1, seconds, "get.lua"))
        p50, p99 = statistics.median(x.p50_ms for x in ours), statistics.median(x.p99_ms for x in ours)
        bare_p50 = statistics.median(x.p50_ms for x in reference)
        bare_p99 = statistics.median(x.p99_ms for x in reference)
        about = f"dashboard data, {queued:,} queued over {ORGANISATIONS} organisations"
        report(Figure(f"{about}, p50", p50, "ms", bare_p50, "bare endpoint", lower_is_better=True))
        report(Figure(f"{about}, p99", p99, "ms", bare_p99, "bare endpoint", lower_is_better=True))
        print(f"target p99 < {TARGET_P99_MS:g} ms: {'met' if p99 < TARGET_P99_MS else 'NOT met'}", flush=True)
    finally:
        drop(client, prefix)
        client.close()
