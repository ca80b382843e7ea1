"""The queue, the schedule store and the beat on a local three-master Redis Cluster.

The unit lane's queue, schedule and beat tests run again, unchanged, on a cluster client (the `client`
fixture differs; the cluster is tests/factories/redis_cluster.py). Then what only a cluster shows:
each store's keys in one slot, wake-ups published on one node heard on another, keys spread over nodes.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from kat_scheduler.dispatcher import Wakeup
from kat_scheduler.leadership import Leadership, beat_leader_key
from kat_scheduler.queues import connect
from kat_scheduler.repositories import ScheduleRepository
from kat_scheduler.repositories.boefje_catalogue import BoefjeCatalogueRepository
from kat_scheduler.store import describe_client
from tests.factories.redis_fixtures import delete_prefixed
from tests.factories.tasks import boefje_task, make_queue, normalizer_task
from tests.factories.waiting import wait_for
from tests.unit.test_beat import *  # noqa: F403  (the same tests, on the cluster)
from tests.unit.test_priority_queue import *  # noqa: F403
from tests.unit.test_schedules import *  # noqa: F403


@pytest.fixture
def client(cluster_client: redis.Redis) -> redis.Redis:
    """The tests above run on the cluster."""
    return cluster_client


def cluster(client: redis.Redis) -> RedisCluster:
    assert isinstance(client, RedisCluster)
    return client


def node_of(client: redis.Redis, key: str) -> ClusterNode:
    node: ClusterNode = cluster(client).get_node_from_key(key)
    return node


def stores(prefix: str) -> list[str]:
    """The hash tags kat_scheduler's keys start with."""
    return ["{" + f"{prefix}:{store}" + "}"
            for store in ("boefje", "normalizer", "schedules:boefje", "schedules:normalizer", "catalogue", "beat")]


def test_a_cluster_url_gives_a_cluster_client(cluster_client: redis.Redis, redis_cluster_url: str) -> None:
    client = cluster(cluster_client)
    assert len(client.get_primaries()) == 3
    assert client.ping() is True
    assert describe_client(client).startswith("redis+cluster://127.0.0.1:")
    # push_many of several chunks calls the script once per chunk here (no single connection to stream on);
    # the unit tests' 2500-task push above covers that path
    assert getattr(client, "connection_pool", None) is None


def test_every_key_lives_in_the_slot_of_its_hash_tag(cluster_client: redis.Redis, key_prefix: str) -> None:
    boefjes = make_queue(cluster_client, key_prefix)
    normalizers = make_queue(cluster_client, key_prefix, "normalizer")
    boefjes.push_many([(boefje_task(org=f"org{n % 3}"), n) for n in range(20)])
    normalizers.push(normalizer_task(), 1)
    [claimed] = boefjes.claim()
    assert boefjes.ack(claimed.id) == "ok"
    assert [r.id for r in boefjes.dispatch(2, slots=5)] and boefjes.reap().requeued == []
    assert boefjes.cancel_ooi("org1", str(boefjes.peek(3)[1].ooi))
    schedules = ScheduleRepository(cluster_client, key_prefix, "boefje")
    task = boefje_task()
    schedules.new("org1", task.model_dump(mode="json"), task.hash)
    catalogue = BoefjeCatalogueRepository(cluster_client, key_prefix)
    catalogue.start_jobs("org1", ["dns", "nmap"])
    catalogue.advance("org1", "dns", 10)
    assert Leadership(cluster_client, beat_leader_key(key_prefix), 10).hold()

    keys_by_tag: dict[str, set[str]] = defaultdict(set)
    for primary in cluster(cluster_client).get_primaries():
        for key in cluster_client.scan_iter(match=f"*{key_prefix}*", target_nodes=primary):
            assert node_of(cluster_client, key).name == primary.name  # found where the slot map says
            tag = key[:key.index("}") + 1] if key.startswith("{") else "untagged"
            keys_by_tag[tag].add(key)
    assert set(keys_by_tag) == set(stores(key_prefix)) - {"{" + f"{key_prefix}:schedules:normalizer" + "}"}
    slots = cluster(cluster_client).keyslot
    for tag, keys in keys_by_tag.items():
        assert {slots(key) for key in keys} == {slots(tag)}, f"the keys of {tag} are in more than one slot"
    assert len(keys_by_tag["{" + f"{key_prefix}:boefje" + "}"]) > 10  # records, queues, indexes, counters


def test_the_default_stores_are_spread_over_the_nodes(cluster_client: redis.Redis) -> None:
    nodes = {tag: node_of(cluster_client, tag).name for tag in stores("kat")}
    assert nodes["{kat:boefje}"] != nodes["{kat:normalizer}"]  # the two queues' work is on two masters
    assert len(set(nodes.values())) == 3


def test_a_wake_up_published_on_one_node_is_heard_on_another(cluster_client: redis.Redis, key_prefix: str) -> None:
    # a prefix of this test whose two queues live on different masters
    prefix = next(candidate for candidate in (f"{key_prefix}-{n}" for n in range(100))
                  if node_of(cluster_client, "{" + f"{candidate}:boefje" + "}").name
                  != node_of(cluster_client, "{" + f"{candidate}:normalizer" + "}").name)
    boefjes, normalizers = make_queue(cluster_client, prefix), make_queue(cluster_client, prefix, "normalizer")
    wakeup = Wakeup(cluster_client, [boefjes.wake_channel, normalizers.wake_channel], poll_seconds=0.1)
    subscribed_on = node_of(cluster_client, boefjes.wake_channel)  # the first channel's node
    wakeup.start()
    try:
        wait_for(lambda: cluster_client.pubsub_numsub(normalizers.wake_channel, target_nodes=subscribed_on)
                   == [(normalizers.wake_channel, 1)], 5, "the subscription")
        wait_for(wakeup.signalled.is_set, 5, "the wake-up after subscribing")
        wakeup.wait(0)
        assert not wakeup.wait(0.2)  # nothing was published
        assert normalizers.push(normalizer_task(), 1).accepted  # its script runs on the other master
        assert wakeup.wait(5)
    finally:
        wakeup.stop()


def test_the_catalogue_transactions_run_on_the_cluster(cluster_client: redis.Redis, key_prefix: str) -> None:
    catalogue = BoefjeCatalogueRepository(cluster_client, key_prefix)
    catalogue.start_jobs("org1", ["dns", "nmap"])
    catalogue.advance("org1", "dns", 25)
    assert catalogue.seen("org1") == {"dns", "nmap"}
    assert catalogue.jobs() == [("org1", "dns", 25), ("org1", "nmap", 0)]
    catalogue.forget("org1", ["dns"])
    catalogue.advance("org1", "dns", 50)  # forgotten meanwhile: it does not come back
    assert catalogue.seen("org1") == {"nmap"} and catalogue.jobs() == [("org1", "nmap", 0)]


def test_deleting_a_prefix_clears_it_from_every_node(cluster_client: redis.Redis, key_prefix: str) -> None:
    keys = [f"{{{key_prefix}-{n}}}:k" for n in range(30)]  # thirty tags: every node gets some
    for key in keys:
        cluster_client.set(key, "1")
    primaries = cluster(cluster_client).get_primaries()

    def found_on(primary: ClusterNode) -> list[str]:
        return list(cluster_client.scan_iter(match="{" + key_prefix + "*", target_nodes=primary))

    assert all(found_on(primary) for primary in primaries)
    delete_prefixed(cluster_client, key_prefix)
    assert not any(found_on(primary) for primary in primaries)


def test_an_unreachable_cluster_is_named_in_the_error() -> None:
    with pytest.raises(redis.ConnectionError, match=r"Redis Cluster at redis\+cluster://127.0.0.1:1/ is unreachable"):
        connect("redis+cluster://127.0.0.1:1/", retries=0, timeout=0.5)
