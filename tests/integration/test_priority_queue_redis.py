"""The queue on the real Redis: the unit lane's tests again, then what only real processes can show."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
import redis

from kat_scheduler.queues import PriorityQueue, PushOutcome, connect
from kat_scheduler.store import StoreUnavailable
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.tasks import boefje_task, make_queue
from tests.factories.waiting import wait_for
from tests.unit.test_priority_queue import *  # noqa: F403  (the same tests, on the real Redis)

CONTEXT = multiprocessing.get_context("spawn")


def _claim_until_empty(prefix: str, start: multiprocessing.synchronize.Barrier) -> list[str]:
    queue = PriorityQueue(connect(REDIS_URL), "boefje", prefix=prefix)
    queue.client.ping()
    start.wait(timeout=60)
    ids: list[str] = []
    while batch := queue.claim(7):
        ids += [record.id for record in batch]
    return ids


def _push_same_identity(prefix: str, start: multiprocessing.synchronize.Barrier) -> list[str]:
    queue = PriorityQueue(connect(REDIS_URL), "boefje", prefix=prefix)
    queue.client.ping()
    start.wait(timeout=60)
    outcomes = []
    for _ in range(50):
        result = queue.push(boefje_task(org="org1", ooi="Hostname|internet|same.example"), 1)
        outcomes.append(result.outcome.value)
    return outcomes


def test_eight_processes_claiming_get_each_item_exactly_once(client: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(client, key_prefix)
    tasks = [boefje_task(org=f"org{n % 13}") for n in range(10_000)]
    queue.push_many([(task, n % 17) for n, task in enumerate(tasks)])
    manager = CONTEXT.Manager()
    start = manager.Barrier(8)  # all eight connected before the first claim: none has it all done first
    with CONTEXT.Pool(8) as pool:
        per_process = pool.starmap_async(_claim_until_empty, [(key_prefix, start)] * 8).get(timeout=120)
    manager.shutdown()
    claimed = [task_id for ids in per_process for task_id in ids]
    assert len(claimed) == len(set(claimed)) == 10_000
    assert set(claimed) == {task.id for task in tasks}
    assert sum(1 for ids in per_process if ids) > 1  # the processes really shared the work
    assert queue.size() == 0 and queue.in_flight() == 10_000


def test_eight_clients_pushing_one_identity_leave_one_task(client: redis.Redis, key_prefix: str) -> None:
    manager = CONTEXT.Manager()
    start = manager.Barrier(8)  # all eight connected before the first push
    with CONTEXT.Pool(8) as pool:
        pending = pool.starmap_async(_push_same_identity, [(key_prefix, start)] * 8)
        outcomes = [o for per_process in pending.get(timeout=60) for o in per_process]
    manager.shutdown()
    assert outcomes.count(PushOutcome.QUEUED.value) == 1
    assert outcomes.count(PushOutcome.DUPLICATE.value) == 399
    queue = make_queue(client, key_prefix)
    assert queue.size() == 1 and queue.records.count() == 1


def _claim_and_hang(prefix: str, lease_seconds: float, claimed: multiprocessing.synchronize.Event) -> None:
    queue = PriorityQueue(connect(REDIS_URL), "boefje", prefix=prefix, lease_seconds=lease_seconds)
    assert queue.claim_one() is not None
    claimed.set()
    time.sleep(600)  # the holder is killed here


def test_a_claim_whose_holder_dies_comes_back_then_is_dead_lettered(client: redis.Redis, key_prefix: str) -> None:
    lease = 0.3
    queue = make_queue(client, key_prefix, lease_seconds=lease, max_attempts=2)
    task = boefje_task()
    queue.push(task, 1)
    for attempt in (1, 2):
        claimed = CONTEXT.Event()
        holder = CONTEXT.Process(target=_claim_and_hang, args=(key_prefix, lease, claimed))
        holder.start()
        assert claimed.wait(30)
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join()
        assert queue.records.get(task.id).attempts == attempt  # type: ignore[union-attr]
        if attempt == 1:
            wait_for(lambda: queue.reap().requeued == [task.id], 5, "the lease to expire")
            assert queue.size() == 1
    wait_for(lambda: queue.reap().dead_lettered == [task.id], 5, "the second lease to expire")
    assert queue.size() == 0 and [r.id for r in queue.dead_letters()] == [task.id]


def test_a_small_organisation_is_served_next_to_a_hundred_thousand_tasks(
    client: redis.Redis, key_prefix: str
) -> None:
    queue = make_queue(client, key_prefix)
    queue.push_many([(boefje_task(org="big"), n) for n in range(100_000)])
    queue.claim(3)
    small = boefje_task(org="small")
    queue.push(small, 10**12)
    assert small.id in [r.id for r in queue.claim(len(queue.counts()))]


def test_an_unreachable_redis_is_named_in_the_error(key_prefix: str) -> None:
    dead_end = connect("redis://127.0.0.1:1/0", retries=1, timeout=0.5)
    queue = PriorityQueue(dead_end, "boefje", prefix=key_prefix)
    with pytest.raises(StoreUnavailable, match=r"Redis at redis://127.0.0.1:1/0 is unreachable"):
        queue.push(boefje_task(), 1)


def test_a_failing_connection_is_retried_before_the_caller_hears_of_it(
        key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = connect(REDIS_URL, retries=3, timeout=1.0)
    queue = PriorityQueue(client, "boefje", prefix=key_prefix)
    assert queue.push(boefje_task(), 1).accepted  # connected, functions loaded
    client.connection_pool.disconnect()
    real_connect = redis.connection.Connection._connect
    attempts = []

    def flaky_connect(self: redis.connection.Connection) -> object:
        attempts.append(1)
        if len(attempts) <= 2:
            raise ConnectionRefusedError("refused, as by a Redis that is restarting")
        return real_connect(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", flaky_connect)
    assert queue.push(boefje_task(), 1).accepted
    [claimed] = queue.claim()
    assert len(attempts) == 3 and claimed is not None
    client.close()
