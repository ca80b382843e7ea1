"""Calls from concurrent coroutines sent to Redis together (queues/call_batcher.py), through the queue's
push_batched and claim_batched as the API calls them. On fakeredis here; again on the real Redis in
tests/integration/test_call_batcher_redis.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kat_scheduler.queues import PriorityQueue, PushOutcome, call_batcher
from kat_scheduler.store import StoreUnavailable
from tests.factories.tasks import boefje_task, make_queue


def record_batches(queue: PriorityQueue, gate: threading.Event | None = None) -> list[int]:
    """The size of each batch the queue's batcher sends; with `gate`, the first batch waits for it."""
    sizes: list[int] = []
    send = queue._lua.replies

    def replies(keys: Sequence[str], arg_lists: list[Sequence[Any]]) -> list[Any]:
        if gate is not None and not sizes:
            assert gate.wait(timeout=10), "the test never opened the gate"
        sizes.append(len(arg_lists))
        return send(keys, arg_lists)

    queue._lua.replies = replies  # type: ignore[method-assign]
    return sizes


def test_calls_waiting_while_one_is_in_flight_go_out_in_one_round_trip(client: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(client, key_prefix)
    gate = threading.Event()
    sizes = record_batches(queue, gate)

    async def open_gate() -> None:
        gate.set()  # runs once each push below has handed over its call

    async def pushes() -> list[Any]:
        return await asyncio.gather(*[queue.push_batched(boefje_task(ooi=f"Hostname|internet|h{n}.example"), n)
                                      for n in range(50)], open_gate())

    results = asyncio.run(pushes())[:50]
    assert [result.outcome for result in results] == [PushOutcome.QUEUED] * 50
    assert sum(sizes) == 50 and len(sizes) <= 2  # the ones that waited went out together
    assert queue.size() == 50
    assert [record.score for record in queue.claim(50)] == list(range(50))  # each call ran as its own


def test_each_caller_gets_its_own_reply_and_only_its_own_error(client: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(client, key_prefix)
    queue.push(boefje_task(ooi="Hostname|internet|taken.example"), 1)

    async def calls() -> list[Any]:
        return await asyncio.gather(
            queue.push_batched(boefje_task(ooi="Hostname|internet|new.example"), 2),
            queue._call_batched("push", "not options", "x"),  # queue.lua refuses it
            queue.claim_batched(1),
            return_exceptions=True)

    pushed, refused, claimed = asyncio.run(calls())
    assert pushed.outcome is PushOutcome.QUEUED
    assert isinstance(refused, redis.ResponseError) and "options" in str(refused)
    assert [record.score for record in claimed] == [1]


def test_calls_from_event_loops_of_several_threads_each_get_their_replies(client: redis.Redis,
                                                                          key_prefix: str) -> None:
    queue = make_queue(client, key_prefix)
    outcomes: dict[int, list[PushOutcome]] = {}

    def loop_of_its_own(number: int) -> None:
        async def pushes() -> list[Any]:
            return await asyncio.gather(*[
                queue.push_batched(boefje_task(ooi=f"Hostname|internet|t{number}-{n}.example"), n) for n in range(20)])
        outcomes[number] = [result.outcome for result in asyncio.run(pushes())]

    threads = [threading.Thread(target=loop_of_its_own, args=(number,)) for number in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == {number: [PushOutcome.QUEUED] * 20 for number in range(3)}
    assert queue.size() == 60


def test_an_unreachable_redis_fails_each_waiting_call_with_store_unavailable(key_prefix: str) -> None:
    unreachable = redis.Redis(port=1, decode_responses=True, retry=Retry(NoBackoff(), 0))
    queue = make_queue(unreachable, key_prefix)

    async def calls() -> list[Any]:
        return await asyncio.gather(*[queue.claim_batched(1) for _ in range(5)], return_exceptions=True)

    failures = asyncio.run(calls())
    assert all(isinstance(failure, StoreUnavailable) for failure in failures), failures


def test_a_forked_child_gets_a_batcher_of_its_own(client: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(client, key_prefix)
    asyncio.run(queue.push_batched(boefje_task(), 1))
    parents = queue._lua._batcher
    assert parents is not None and parents.alive()
    call_batcher._forked()  # what os.fork runs in the child, which has the batcher but not its thread
    try:
        assert not parents.alive()
        assert [record.score for record in asyncio.run(queue.claim_batched(1))] == [1]
        assert queue._lua._batcher is not parents and queue._lua._batcher.alive()
    finally:
        call_batcher._forks[0] -= 1
