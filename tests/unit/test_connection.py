"""connect(url): which client each URL form gives, with which settings (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.exceptions import ClusterDownError
from redis.sentinel import SentinelConnectionPool

from kat_scheduler.leadership import Leadership
from kat_scheduler.queues import connect
from kat_scheduler.queues.connection import _split
from kat_scheduler.store import StoreUnavailable, describe_client
from tests.factories.tasks import boefje_task, make_queue


def test_a_url_with_several_nodes_is_read_node_by_node() -> None:
    parts = _split("redis+cluster://me:p%40ss@h1:7000,[::1]:7001,h3/", default_port=6379)
    assert parts.nodes == [("h1", 7000), ("::1", 7001), ("h3", 6379)]
    assert (parts.username, parts.password, parts.path) == ("me", "p@ss", "/")
    assert _split("redis+sentinel://s1,s2:5000/mymaster/2?sentinel_password=x", default_port=26379).nodes == [
        ("s1", 26379), ("s2", 5000)]


def test_a_plain_url_gives_one_server_with_retries_and_decoded_replies() -> None:
    client = connect("redis://127.0.0.1:6390/3", retries=4, timeout=2.0)
    kwargs = client.get_connection_kwargs()
    assert type(client) is redis.Redis and kwargs["db"] == 3 and kwargs["decode_responses"] is True
    assert kwargs["socket_timeout"] == 2.0 and kwargs["retry"].get_retries() == 4
    assert describe_client(client) == "redis://127.0.0.1:6390/3"


def test_a_sentinel_url_asks_the_sentinels_for_the_master_of_its_service() -> None:
    client = connect("redis+sentinel://:secret@s1:5000,s2/mymaster/2?sentinel_password=watch", retries=4)
    pool: Any = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    kwargs = pool.connection_kwargs
    assert kwargs["db"] == 2 and kwargs["password"] == "secret" and kwargs["decode_responses"] is True
    assert kwargs["retry"].get_retries() == 4
    sentinels = [sentinel.get_connection_kwargs() for sentinel in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"], s["password"]) for s in sentinels] == [("s1", 5000, "watch"),
                                                                          ("s2", 26379, "watch")]
    assert describe_client(client) == "redis+sentinel://s1:5000,s2:26379/mymaster"


@pytest.mark.parametrize(("url", "complaint"), [
    ("redis+sentinel://s1:26379/", "name the Sentinel service"),
    ("redis+cluster://h1:7000/3", "only database 0"),
    ("redis+cluster:///", "no host:port"),
])
def test_incomplete_urls_are_refused_before_connecting(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        connect(url)


def test_a_cluster_that_is_down_makes_the_queue_and_the_lease_unavailable(client: redis.Redis, key_prefix: str) -> None:
    def cluster_down(*_: Any) -> None:
        raise ClusterDownError("The cluster is down")

    queue = make_queue(client, key_prefix)
    queue._lua._call_many = cluster_down  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable, match="The cluster is down"):
        queue.push(boefje_task(), 1)
    leadership = Leadership(client, "{" + f"{key_prefix}:beat" + "}:leader", 1.0)
    leadership._lua._call_many = cluster_down  # type: ignore[method-assign]
    assert leadership.hold() is False  # a standby, not a crash
