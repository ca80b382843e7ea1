"""The API on the real Redis: a pull runner working over HTTP beside a Celery-style claimer on the same
queue, and the schedule behaviours that touch several keys at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from kat_scheduler.config import load_settings
from kat_scheduler.context.context import AppContext
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from tests.factories.redis_fixtures import REDIS_URL

TASKS = 300


@pytest.fixture
def context(real_redis: redis.Redis, key_prefix: str) -> AppContext:
    return AppContext.create(load_settings(key_prefix=key_prefix, redis_url=REDIS_URL), redis_client=real_redis)


@pytest.fixture
def api(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context, ApiSettings(api_token=None))) as client:
        yield client


def boefje_data(n: int, boefje: str = "dns-records") -> dict[str, Any]:
    return {"boefje": {"id": boefje}, "input_ooi": f"Hostname|internet|host{n}.example",
            "organization": f"org{n % 3}"}


def test_a_pull_runner_and_a_second_claimer_never_do_the_same_work(api: TestClient, context: AppContext,
                                                                   key_prefix: str) -> None:
    pushed = {api.post("/schedulers/boefje/push", json={"organisation": f"org{n % 3}", "data": boefje_data(n)})
              .json()["id"] for n in range(TASKS)}
    assert len(pushed) == TASKS
    claimer_done: list[str] = []
    failures: list[BaseException] = []

    def celery_like_dispatcher() -> None:
        """Claims through its own connection, as the dispatcher does, and acks as task events would."""
        client = connect(REDIS_URL)
        queue = PriorityQueue(client, "boefje", prefix=key_prefix)
        try:
            while claimed := queue.claim(2):
                for record in claimed:
                    assert queue.mark_running(record.id, record.attempts) == "ok"
                    assert queue.ack(record.id, attempt=record.attempts) == "ok"
                    claimer_done.append(record.id)
        except BaseException as error:  # reported to the main thread below
            failures.append(error)
        finally:
            client.close()

    claimer = threading.Thread(target=celery_like_dispatcher)
    claimer.start()
    runner_done: list[str] = []
    while popped := api.post("/schedulers/boefje/pop?limit=3").json()["results"]:
        for task in popped:
            assert task["status"] == "dispatched"
            assert api.patch(f"/tasks/{task['id']}", json={"status": "running"}).json()["status"] == "running"
            done = api.patch(f"/tasks/{task['id']}", json={"status": "completed"})
            assert done.status_code == 200, done.text
            runner_done.append(task["id"])
    claimer.join()
    assert not failures, failures
    assert runner_done and claimer_done  # both took part
    assert len(set(runner_done)) == len(runner_done)
    assert not set(runner_done) & set(claimer_done)
    assert set(runner_done) | set(claimer_done) == pushed
    completed = api.get("/tasks?status=completed&limit=1000").json()
    assert completed["count"] == TASKS
    assert context.boefjes.size() == 0 and context.boefjes.in_flight() == 0


def test_a_filtered_pull_runner_takes_only_its_plugins_beside_an_unfiltered_claimer(api: TestClient,
                                                                                     context: AppContext) -> None:
    for n in range(60):
        api.post("/schedulers/boefje/push",
                 json={"organisation": f"org{n % 3}", "data": boefje_data(n, "nmap" if n % 2 else "dns-records")})
    body = {"filters": [{"column": "data", "field": "boefje__id", "operator": "in", "value": ["nmap"]}]}
    taken: list[dict[str, Any]] = []
    while popped := api.post("/schedulers/boefje/pop?limit=7", json=body).json()["results"]:
        taken += popped
        context.boefjes.claim(1)  # someone else takes work meanwhile
    assert taken and {t["data"]["boefje"]["id"] for t in taken} == {"nmap"}
    assert len({t["id"] for t in taken}) == len(taken)


def test_schedules_on_the_real_redis(api: TestClient, context: AppContext) -> None:
    data = boefje_data(1)
    created = api.post("/schedules", json={"scheduler_id": "boefje", "organisation": "org1", "data": data,
                                           "schedule": "*/5 * * * *"})
    assert created.status_code == 201
    schedule = created.json()
    duplicate = api.post("/schedules", json={"scheduler_id": "boefje", "organisation": "org1", "data": data})
    assert duplicate.status_code == 409
    assert api.post("/schedules", json={"scheduler_id": "boefje", "organisation": "org1", "data": boefje_data(2),
                                        "schedule": "* * *"}).status_code == 400
    task = BoefjeTask.model_validate(data)
    assert context.boefjes.push(task, 1, schedule_id=schedule["id"]).accepted
    assert api.delete(f"/schedules/{schedule['id']}").status_code == 204
    assert api.get(f"/tasks/{task.id}").json()["schedule_id"] == schedule["id"]
    again = api.post("/schedules", json={"scheduler_id": "boefje", "organisation": "org1", "data": data})
    assert again.status_code == 201  # the identity is free once its schedule is gone
