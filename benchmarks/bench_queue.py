"""The priority queue on the real Redis, beside raw redis-py commands of the same run."""

from __future__ import annotations

import os
import uuid

import redis

from benchmarks.harness import Figure, rate, report
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PriorityQueue, connect

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")


def tasks(count: int, orgs: int = 10) -> list[BoefjeTask]:
    return [
        BoefjeTask(boefje={"id": "dns-records"}, input_ooi=f"Hostname|internet|host{n}.example.com",
                   organization=f"org{n % orgs}")
        for n in range(count)
    ]


def drop(client: redis.Redis, prefix: str) -> None:
    for pattern in (f"{prefix}*", "{" + prefix + "*"):
        keys = list(client.scan_iter(match=pattern, count=5000))
        for start in range(0, len(keys), 5000):
            client.delete(*keys[start:start + 5000])


def memory_of(client: redis.Redis, prefix: str) -> int:
    keys = list(client.scan_iter(match="{" + prefix + "*", count=5000)) + \
        list(client.scan_iter(match=f"{prefix}*", count=5000))
    total = 0
    for start in range(0, len(keys), 5000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start:start + 5000]:
            pipe.memory_usage(key, samples=0)
        total += sum(size or 0 for size in pipe.execute())
    return total


def run(quick: bool = False) -> None:
    client = connect(REDIS_URL)
    ops = 2_000 if quick else 10_000
    prefix = f"kat-bench-{uuid.uuid4().hex[:8]}"
    raw_key = f"{prefix}:raw"
    queue = PriorityQueue(client, "boefje", prefix=prefix)
    try:
        members = [str(uuid.uuid4()) for _ in range(ops)]

        def raw_zadd() -> None:
            for n, member in enumerate(members):
                client.zadd(raw_key, {member: n})

        def raw_zpopmin() -> None:
            for _ in range(ops):
                client.zpopmin(raw_key)

        raw_push_rate = rate(ops, raw_zadd)
        raw_pop_rate = rate(ops, raw_zpopmin)

        single = tasks(ops)
        push_rate = rate(ops, lambda: [queue.push(task, 1) for task in single])
        report(Figure("push", push_rate, "tasks/s", raw_push_rate, "raw single-client ZADD"))
        claimed: list[str] = []
        claim_rate = rate(ops, lambda: [claimed.append(queue.claim_one().id) for _ in range(ops)])  # type: ignore[union-attr]
        report(Figure("claim", claim_rate, "tasks/s", raw_pop_rate, "raw single-client ZPOPMIN"))
        ack_rate = rate(ops, lambda: [queue.ack(task_id) for task_id in claimed])
        report(Figure("ack", ack_rate, "tasks/s", raw_pop_rate, "raw single-client ZPOPMIN"))
        drop(client, prefix)

        batch = tasks(10_000)
        batch_members = {str(uuid.uuid4()): n for n in range(10_000)}

        def raw_pipelined() -> None:
            pipe = client.pipeline(transaction=False)
            for member, score in batch_members.items():
                pipe.zadd(raw_key, {member: score})
            pipe.execute()

        raw_batch_rate = rate(10_000, raw_pipelined)
        batch_rate = rate(10_000, lambda: queue.push_many([(task, 1) for task in batch]))
        report(Figure("batch push of 10,000", batch_rate, "tasks/s", raw_batch_rate, "raw pipelined ZADD"))
        drop(client, prefix)

        count = 20_000 if quick else 100_000
        queue.push_many([(task, 1) for task in tasks(count, orgs=100)])
        per_task = memory_of(client, prefix) / count
        pipe = client.pipeline(transaction=False)
        for n in range(count):
            pipe.zadd(raw_key, {str(uuid.uuid4()): n})
        pipe.execute()
        raw_per_member = (client.memory_usage(raw_key, samples=0) or 0) / count
        report(Figure(f"Redis memory per queued boefje task ({count:,} queued, record included)", per_task,
                      "bytes", raw_per_member, "a bare sorted-set entry", lower_is_better=True))
    finally:
        drop(client, prefix)
