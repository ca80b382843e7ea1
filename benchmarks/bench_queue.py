"""The priority queue on the real Redis, beside raw redis-py commands of the same run."""

from __future__ import annotations

import gc
import os
import time
import uuid
from collections.abc import Callable, Iterator

import redis

from benchmarks.harness import Figure, Stopwatch, report
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.queues.priority_queue import CLAIM_CHUNK
from kat_scheduler.repositories.task_records import TaskRecord
from kat_scheduler.server.serve import freeze_what_start_up_made

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")
ROUNDS = 5
BATCH_ROUNDS = 3


def tasks(count: int, orgs: int = 10, start: int = 0) -> list[BoefjeTask]:
    return [
        BoefjeTask(boefje={"id": "dns-records"}, input_ooi=f"Hostname|internet|host{n}.example.com",
                   organization=f"org{n % orgs}")
        for n in range(start, start + count)
    ]


def raw_pipelined_zadd(client: redis.Redis, key: str, members: dict[str, int]) -> None:
    pipe = client.pipeline(transaction=False)
    for member, score in members.items():
        pipe.zadd(key, {member: score})
    pipe.execute()


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


def p99_ms(durations: list[float]) -> float:
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def filtered_pop(client: redis.Redis, queue: PriorityQueue, raw_key: str, queued: int) -> None:
    """A runner that pops one plugin's tasks, which stand behind `queued` others of 100 organisations."""
    wanted = 200
    queue.push_many([(BoefjeTask(boefje={"id": "nmap"}, input_ooi=f"Hostname|internet|late{n}.example.com",
                                 organization=f"org{n % 100}"), 10**12) for n in range(wanted)])
    queue.claim(1, plugin_ids=["nmap"])  # a queue's first filtered claim completes its plugin index
    ours, raw = [], []
    for _ in range(wanted - 1):
        started = time.perf_counter()
        assert queue.claim(1, plugin_ids=["nmap"]), "a matching task was not found"
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.zpopmin(raw_key)
        raw.append(time.perf_counter() - started)
    report(Figure(f"filtered pop p99 ({queued:,} queued over 100 organisations, the matching ones last)",
                  p99_ms(ours), "ms", p99_ms(raw), "raw ZPOPMIN p99", lower_is_better=True))


def claims_behind_others(client: redis.Redis, prefix: str, rounds: int, ahead: int = 10_000, limit: int = 1_000,
                         one_by_one: bool = False) -> Iterator[tuple[PriorityQueue, Callable[[], list[TaskRecord]]]]:
    """The scene of filtered_pop_many and of benchmarks/claim_cost.py: `ahead` tasks of other plugins over
    100 organisations, then each round `limit` tasks of one plugin pushed behind them. Yields the queue
    and the round's claim of them all; `one_by_one`: a weight of 1 in play, which changes no turn but
    makes queue.lua take the claim one task at a time."""
    queue = PriorityQueue(client, "boefje", prefix=prefix)
    try:
        queue.push_many([(task, 1) for task in tasks(ahead, orgs=100)])
        queue.claim(1, plugin_ids=["shodan"])  # the first filtered claim completes the plugin index
        if one_by_one:
            queue.set_weights({"org0": 1})
        for round_number in range(rounds):
            queue.push_many([(BoefjeTask(boefje={"id": "shodan"}, organization=f"org{n % 100}",
                                         input_ooi=f"Hostname|internet|r{round_number}-{n}.example.com"), 10**12)
                             for n in range(limit)])
            yield queue, lambda: queue.claim(limit, plugin_ids=["shodan"])
    finally:
        drop(client, prefix)


def filtered_pop_many(client: redis.Redis, prefix: str, ahead: int = 10_000, limit: int = 1_000,
                      rounds: int = 20) -> None:
    """A pull runner's `pop?limit=1000` for one plugin with `ahead` tasks of other plugins in front:
    the cost of one claim call whatever its limit (the plugin index reads only matching tasks)."""
    raw_key = f"{prefix}-many-raw"
    ours: list[float] = []
    raw: list[float] = []
    calls: list[float] = []
    try:
        for round_number, (queue, claim) in enumerate(claims_behind_others(client, f"{prefix}-many", rounds,
                                                                            ahead, limit)):
            if round_number == 0:
                freeze_what_start_up_made()  # as `kat-scheduler api` does once started
                time_claim_calls(queue, calls)
            client.zadd(raw_key, {str(n): n for n in range(limit)})
            started = time.perf_counter()
            assert len(claim()) == limit, "the matching tasks were not all found"
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.zpopmin(raw_key, limit)
            raw.append(time.perf_counter() - started)
    finally:
        gc.unfreeze()
        client.delete(raw_key)
    report(Figure(f"filtered pop of {limit:,} p99 ({ahead:,} tasks of other plugins ahead)", p99_ms(ours), "ms",
                  p99_ms(raw), f"raw ZPOPMIN of {limit:,} p99", lower_is_better=True))
    report(Figure(f"  its longest script call, p99 ({CLAIM_CHUNK} tasks a call)", p99_ms(calls), "ms",
                  p99_ms(raw), f"raw ZPOPMIN of {limit:,} p99", lower_is_better=True))


def time_claim_calls(queue: PriorityQueue, calls: list[float]) -> None:
    """From now on, note in `calls` how long each of the queue's claim script calls holds Redis."""
    call = queue._call

    def timed_call(operation: str, *args: object) -> object:
        started = time.perf_counter()
        try:
            return call(operation, *args)
        finally:
            if operation == "claim":
                calls.append(time.perf_counter() - started)

    queue._call = timed_call  # type: ignore[method-assign]


def run(quick: bool = False) -> None:
    client = connect(REDIS_URL)
    ops = 2_000 if quick else 10_000
    prefix = f"kat-bench-{uuid.uuid4().hex[:8]}"
    raw_key = f"{prefix}:raw"
    queue = PriorityQueue(client, "boefje", prefix=prefix)
    try:
        # Single operations, ours and raw in alternate rounds (see Stopwatch).
        watch = Stopwatch()
        per_round = ops // ROUNDS
        for round_number in range(ROUNDS):
            members = [str(uuid.uuid4()) for _ in range(per_round)]
            single = tasks(per_round, start=round_number * per_round)
            with watch.timing("raw zadd", per_round):
                for n, member in enumerate(members):
                    client.zadd(raw_key, {member: n})
            with watch.timing("raw zpopmin", per_round):
                for _ in range(per_round):
                    client.zpopmin(raw_key)
            with watch.timing("push", per_round):
                for task in single:
                    queue.push(task, 1)
            with watch.timing("claim", per_round):
                claimed = [queue.claim_one() for _ in range(per_round)]
            with watch.timing("ack", per_round):
                for record in claimed:
                    queue.ack(record.id)  # type: ignore[union-attr]
        report(Figure("push", watch.rate("push"), "tasks/s", watch.rate("raw zadd"), "raw single-client ZADD"))
        report(Figure("claim", watch.rate("claim"), "tasks/s", watch.rate("raw zpopmin"),
                      "raw single-client ZPOPMIN"))
        report(Figure("ack", watch.rate("ack"), "tasks/s", watch.rate("raw zpopmin"), "raw single-client ZPOPMIN"))
        drop(client, prefix)

        # Batches of 10,000, ours and raw pipelined ZADD in alternate rounds.
        batches = Stopwatch()
        for round_number in range(BATCH_ROUNDS):
            batch = tasks(10_000, start=round_number * 10_000)
            batch_members = {str(uuid.uuid4()): n for n in range(10_000)}
            with batches.timing("raw", 10_000):
                raw_pipelined_zadd(client, raw_key, batch_members)
            with batches.timing("ours", 10_000):
                queue.push_many([(task, 1) for task in batch])
            drop(client, prefix)
        report(Figure("batch push of 10,000", batches.rate("ours"), "tasks/s", batches.rate("raw"),
                      "raw pipelined ZADD"))

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
        filtered_pop(client, queue, raw_key, count)
        filtered_pop_many(client, prefix, rounds=5 if quick else 20)
    finally:
        drop(client, prefix)
