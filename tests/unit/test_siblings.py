"""One run for several organisations: organisations that deduplicate and whose config of a boefje is the
same (Katalogus says which) get sibling tasks for an object they all hold; a claim takes the siblings
together, and what happens to the task that runs happens to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from kat_scheduler.context import AppContext
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.schedulers import BoefjeScheduler
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from kat_scheduler.simulation import World
from kat_scheduler.simulation.world import ooi
from tests.factories.kat_world import DISABLED, PLUGINS, mutation
from tests.factories.tasks import FakeClock, boefje_task

HOST = "Hostname|internet|shared.example"
ORGS = ("org1", "org2", "org3")  # they deduplicate
OTHER = "org4"  # it holds the host too, but does not deduplicate


@pytest.fixture
def world() -> World:
    """Four organisations hold the same host with the same configs; three of them deduplicate."""
    everyone = (*ORGS, OTHER)
    return World(
        seed=0,
        organisations={org: {"id": org, "name": org, "deduplicate": org != OTHER} for org in everyone},
        oois={org: {HOST: ooi(HOST, 2)} for org in everyone},
        plugins={p["id"]: p for p in PLUGINS},
        enabled={org: {p["id"]: p["id"] not in DISABLED for p in PLUGINS} for org in everyone},
    )


@pytest.fixture
def api(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context, ApiSettings(api_token=None, reap_interval_seconds=0))) as client:
        yield client


def statuses(queue: PriorityQueue, ids: list[str]) -> list[str]:
    return [str(queue.records.get(task_id).status) for task_id in ids]  # type: ignore[union-attr]


def grouped(queue: PriorityQueue) -> list[str]:
    ids = [queue.push(boefje_task(org=org, ooi=HOST), 1).task_id for org in ORGS]
    assert queue.group(ids[0], ids) == 3
    return ids


def test_a_claim_takes_the_siblings_with_it_and_their_run_is_one(queue: PriorityQueue) -> None:
    ids = grouped(queue)
    claimed = queue.claim(1)
    first = claimed[0]
    assert sorted(r.id for r in claimed) == sorted(ids) and first.sibling_of is None
    assert all(r.sibling_of == first.id for r in claimed[1:])
    assert queue.mark_running(first.id) == "ok"
    assert statuses(queue, [r.id for r in claimed]) == ["running"] * 3
    assert queue.ack(first.id) == "ok"
    assert statuses(queue, [r.id for r in claimed]) == ["completed"] * 3
    assert queue.stats()["completed"] == 3


def test_a_failed_run_gives_the_siblings_another_chance(queue: PriorityQueue) -> None:
    grouped(queue)
    first, *siblings = queue.claim(1)
    assert queue.ack(first.id, failed=True) == "ok"
    assert statuses(queue, [first.id]) == ["failed"]
    assert statuses(queue, [s.id for s in siblings]) == ["queued", "queued"]
    again = queue.claim(1)  # the two left are still one group
    assert sorted(r.id for r in again) == sorted(s.id for s in siblings) and again[1].sibling_of == again[0].id


def test_a_handed_back_task_takes_its_siblings_back_to_the_queue(queue: PriorityQueue) -> None:
    grouped(queue)
    first, *_ = queue.claim(1)
    assert queue.release(first.id, first.attempts) == "ok"
    assert sum(queue.counts().values()) == 3


def test_a_deduplicating_organisation_queues_siblings_for_the_organisations_that_share_the_work(
        context: AppContext, api: TestClient) -> None:
    results = BoefjeScheduler(context).on_mutation(mutation("update", HOST, level=2, org="org1"))
    queued = {r.task_id for r in results if r.outcome == "queued"}
    records = [context.boefjes.records.get(task_id) for task_id in queued]
    dns = [r for r in records if r is not None and r.plugin_id == "dns"]
    # org1 leads; org2 and org3 deduplicate too; org4 does not (Katalogus leaves it out)
    assert sorted(r.organisation for r in dns) == ["org1", "org2", "org3"]
    [leader] = [r for r in dns if r.organisation == "org1"]
    assert all(r.data["deduplication_key"] == leader.id for r in dns)

    # A pull runner pops: the siblings come together; its PATCHes of the one it runs move them all.
    popped = api.post("/schedulers/boefje/pop", json={"filters": [
        {"column": "data", "field": "boefje__id", "operator": "==", "value": "dns"}]}).json()["results"]
    assert sorted(task["organisation"] for task in popped) == ["org1", "org2", "org3"]  # one run for three
    run = next(task for task in popped if task["id"] == task["data"]["deduplication_key"])
    assert api.patch(f"/tasks/{run['id']}", json={"status": "running"}).status_code == 200
    assert {api.get(f"/tasks/{task['id']}").json()["status"] for task in popped} == {"running"}
    assert api.patch(f"/tasks/{run['id']}", json={"status": "completed"}).status_code == 200
    assert {api.get(f"/tasks/{task['id']}").json()["status"] for task in popped} == {TaskStatus.COMPLETED.value}
    for task in popped:  # OpenKAT's runner then PATCHes each sibling itself: a no-op
        assert api.patch(f"/tasks/{task['id']}", json={"status": "completed"}).status_code == 200


def test_without_the_flag_nothing_is_deduplicated(context: AppContext, world: World) -> None:
    for org in world.organisations:
        world.organisations[org]["deduplicate"] = False
    results = BoefjeScheduler(context).on_mutation(mutation("update", HOST, level=2, org="org1"))
    organisations = {context.boefjes.records.get(r.task_id).organisation for r in results}  # type: ignore[union-attr]
    assert organisations == {"org1"}


def test_a_reap_of_pulled_tasks_leaves_a_forwarded_runs_siblings_alone(queue: PriorityQueue, clock: FakeClock) -> None:
    grouped(queue)
    claimed = queue.dispatch(1, slots=1)
    assert len(claimed) == 3  # the run, forwarded to a Celery runner, and its two siblings
    clock.advance(61)
    assert queue.reap(pulled_only=True).requeued == []
    assert sorted(queue.reap().requeued) == sorted(record.id for record in claimed)
