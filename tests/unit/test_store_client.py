"""Every store reaches Redis through StoreClient: an unreachable Redis is one exception, naming the store
and the address, whatever the store and whichever call (command, pipeline, script) met the outage."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis

from kat_scheduler.leadership import Leadership
from kat_scheduler.queues import connect
from kat_scheduler.repositories.boefje_catalogue import BoefjeCatalogueRepository
from kat_scheduler.repositories.schedules import ScheduleRepository
from kat_scheduler.store import StoreClient, StoreUnavailable
from tests.factories.tasks import boefje_task, make_queue


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def nowhere() -> redis.Redis:
    """A client of a port nobody listens on, that gives up at once."""
    return connect(f"redis://127.0.0.1:{free_port()}/0", retries=0, timeout=0.5)


CALLS: dict[str, tuple[str, Callable[[redis.Redis], Any]]] = {
    "queue script": ("queue boefje", lambda client: make_queue(client, "p").push(boefje_task(), 1)),
    "queue read": ("queue boefje", lambda client: make_queue(client, "p").size()),
    "records read": ("records boefje", lambda client: make_queue(client, "p").records.get("x")),
    "records pipeline": ("records boefje", lambda client: make_queue(client, "p").records.count_created(["o"])),
    "schedules read": ("schedules boefje", lambda client: ScheduleRepository(client, "p", "boefje").due(0, 10)),
    "schedules script": ("schedules boefje",
                         lambda client: ScheduleRepository(client, "p", "boefje").new("o", {"input_ooi": "x"}, "h")),
    "leader lease script": ("leader lease", lambda client: Leadership(client, "{p:beat}:leader", 5)._call("acquire")),
    "catalogue read": ("catalogue", lambda client: BoefjeCatalogueRepository(client, "p").seen("o")),
    "leader lease read": ("leader lease", lambda client: Leadership(client, "{p:beat}:leader", 5).holder()),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_unreachable_redis_is_one_exception_naming_the_store_and_the_url(nowhere: redis.Redis,
                                                                           call: str) -> None:
    store, run = CALLS[call]
    with pytest.raises(StoreUnavailable) as raised:
        run(nowhere)
    port = nowhere.get_connection_kwargs()["port"]
    assert raised.value.store == store and raised.value.url == f"redis://127.0.0.1:{port}/0"
    assert str(raised.value).startswith(f"{store}: Redis at redis://127.0.0.1:{port}/0 is unreachable")
    assert isinstance(raised.value.cause, redis.ConnectionError)


def test_error_replies_are_not_outages() -> None:
    store = StoreClient(fakeredis.FakeRedis(decode_responses=True), "test")
    store.set("a-string", "x")
    with pytest.raises(redis.ResponseError):
        store.zcard("a-string")  # a wrong type is a bug to see, not an outage to sit out
    pipe = store.pipeline(transaction=False)
    assert pipe.get("a-string").set("b", "y") is pipe  # queued commands chain on the guarded pipeline
    assert pipe.execute() == ["x", True]


def test_wrapping_a_store_client_again_wraps_the_same_redis_client() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    again = StoreClient(StoreClient(client, "first"), "second")
    assert again.raw is client and again.store == "second"
