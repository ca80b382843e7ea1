"""The queue's calls from coroutines (push_batched, claim_batched), on the event loop's own connection to the
real Redis (loop_pipe.py): what one turn of the loop calls goes out in one write, each reply goes
to its own caller, and a lost, hung or flushed Redis leaves no call unanswered and no task lost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kat_scheduler.loop_pipe import LoopPipe
from kat_scheduler.queues import PriorityQueue, PushOutcome, connect
from kat_scheduler.store import StoreUnavailable
from tests.factories.redis_fixtures import REDIS_URL, delete_prefixed
from tests.factories.tasks import boefje_task, make_queue


def hosts(count: int, tag: str = "h") -> list[Any]:
    return [boefje_task(ooi=f"Hostname|internet|{tag}{n}.example") for n in range(count)]


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many calls each write of a pipe carried."""
    writes: list[int] = []
    write = LoopPipe._write

    def counted(pipe: LoopPipe) -> None:
        writes.append(len(pipe._outgoing))
        write(pipe)

    monkeypatch.setattr(LoopPipe, "_write", counted)
    return writes


def test_the_calls_of_one_turn_of_the_loop_go_out_in_one_write_and_each_reply_to_its_caller(
        real_redis: redis.Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = make_queue(real_redis, key_prefix)
    writes = count_writes(monkeypatch)

    async def pushes() -> list[Any]:
        return await asyncio.gather(*[queue.push_batched(task, n) for n, task in enumerate(hosts(50))])

    results = asyncio.run(pushes())
    assert [result.outcome for result in results] == [PushOutcome.QUEUED] * 50
    assert [result.task_id for result in results] == [result.record.id for result in results if result.record]
    assert writes == [50]  # (the connection's greeting has nothing to say on database 0 without a password)
    assert [record.score for record in queue.claim(50)] == list(range(50))  # each call ran as its own


def test_an_error_reply_goes_to_its_caller_alone(real_redis: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(real_redis, key_prefix)
    queue.push(boefje_task(ooi="Hostname|internet|first.example"), 1)

    async def calls() -> list[Any]:
        return await asyncio.gather(queue.push_batched(boefje_task(), 2),
                                    queue._call_batched("push", "not options", "x"),  # queue.lua refuses it
                                    queue.claim_batched(1), return_exceptions=True)

    pushed, refused, claimed = asyncio.run(calls())
    assert pushed.outcome is PushOutcome.QUEUED
    assert isinstance(refused, redis.ResponseError) and "options" in str(refused)
    assert [record.score for record in claimed] == [1]


def test_event_loops_of_several_threads_each_get_their_own_replies(real_redis: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(real_redis, key_prefix)
    outcomes: dict[int, list[PushOutcome]] = {}

    def loop_of_its_own(number: int) -> None:
        async def pushes() -> list[Any]:
            return await asyncio.gather(*[queue.push_batched(task, 1) for task in hosts(20, f"t{number}-")])
        outcomes[number] = [result.outcome for result in asyncio.run(pushes())]

    threads = [threading.Thread(target=loop_of_its_own, args=(number,)) for number in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == {number: [PushOutcome.QUEUED] * 20 for number in range(3)}
    assert queue.size() == 60


def test_calls_whose_replies_were_lost_with_the_connection_go_through_the_client_and_no_task_is_lost(
        real_redis: redis.Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = make_queue(real_redis, key_prefix)
    write = LoopPipe._write

    def write_then_lose_the_connection(pipe: LoopPipe) -> None:
        write(pipe)  # the calls reach Redis, which runs them; their replies never arrive
        pipe.close()

    tasks = hosts(10, "lost")

    async def pushes() -> list[Any]:
        await queue.push_batched(boefje_task(ooi="Hostname|internet|opening.example"), 0)  # opens the pipe
        monkeypatch.setattr(LoopPipe, "_write", write_then_lose_the_connection)
        return await asyncio.gather(*[queue.push_batched(task, 1) for task in tasks])

    results = asyncio.run(pushes())
    # Each push ran in Redis; run again through the client, it finds itself queued already (its own id).
    assert all(result.outcome in (PushOutcome.QUEUED, PushOutcome.DUPLICATE) for result in results)
    assert [result.task_id for result in results] == [task.id for task in tasks]
    assert queue.size() == 11 and len({record.id for record in queue.claim(11)}) == 11


def test_a_redis_that_lost_its_functions_gets_them_again(real_redis: redis.Redis, key_prefix: str) -> None:
    queue = make_queue(real_redis, key_prefix)

    async def push_flush_push() -> list[Any]:
        first = await queue.push_batched(boefje_task(), 1)
        real_redis.function_flush()  # as a Redis restarted without persistence
        return [first, await queue.push_batched(boefje_task(), 2)]

    assert [result.outcome for result in asyncio.run(push_flush_push())] == [PushOutcome.QUEUED] * 2


@pytest.fixture
def database_1(key_prefix: str) -> Iterator[redis.Redis]:
    client = connect(REDIS_URL.rsplit("/", 1)[0] + "/1")
    yield client
    delete_prefixed(client, key_prefix)
    client.close()


def test_the_pipe_speaks_to_the_clients_database_under_its_name(database_1: redis.Redis, key_prefix: str) -> None:
    named = redis.Redis(connection_pool=redis.ConnectionPool.from_url(
        REDIS_URL.rsplit("/", 1)[0] + "/1", decode_responses=True, client_name=f"{key_prefix}-pipe"))
    queue = make_queue(named, key_prefix)

    async def push() -> Any:
        return await queue.push_batched(boefje_task(), 1)

    assert asyncio.run(push()).outcome is PushOutcome.QUEUED
    assert PriorityQueue(database_1, "boefje", prefix=key_prefix).size() == 1  # in database 1
    assert any(client["name"] == f"{key_prefix}-pipe" for client in database_1.client_list())


def test_unreachable_or_silent_redis_is_store_unavailable_within_the_timeout(key_prefix: str) -> None:
    silent = threading.Event()
    server: dict[str, Any] = {}

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):  # takes the calls, answers nothing, until the client hangs up
            pass
        writer.close()

    def serve() -> None:
        async def main() -> None:
            server["server"] = await asyncio.start_server(never_answers, "127.0.0.1", 0)
            server["port"] = server["server"].sockets[0].getsockname()[1]
            silent.set()
            await asyncio.Event().wait()
        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    assert silent.wait(10)
    for port in (1, server["port"]):  # nothing listens on port 1
        client = redis.Redis(port=port, decode_responses=True, socket_timeout=0.3, socket_connect_timeout=0.3,
                             retry=Retry(NoBackoff(), 0))
        queue = make_queue(client, key_prefix)

        async def claims(queue: PriorityQueue = queue) -> list[Any]:
            return await asyncio.gather(*[queue.claim_batched(1) for _ in range(3)], return_exceptions=True)

        started = time.monotonic()
        failures = asyncio.run(claims())
        assert all(isinstance(failure, StoreUnavailable) for failure in failures), failures
        assert time.monotonic() - started < 5  # each of the three calls waits one socket timeout or so
