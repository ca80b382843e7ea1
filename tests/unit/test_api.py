"""The HTTP API (docs/api.md) on fakeredis, through FastAPI's TestClient."""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from kat_scheduler import metrics
from kat_scheduler.config import load_settings
from kat_scheduler.context.context import AppContext
from kat_scheduler.models import BoefjeTask
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from kat_scheduler.server.openapi import render
from tests.factories.tasks import FakeClock, normalizer_task

_hosts = itertools.count()
CLOSED_PORT_URL = "http://127.0.0.1:9"


def boefje_data(org: str = "org1", boefje: str = "dns-records", ooi: str | None = None,
                image: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"id": boefje}
    if image:
        ref["oci_image"] = image
    return {"boefje": ref, "input_ooi": ooi or f"Hostname|internet|host{next(_hosts)}.example",
            "organization": org}


def make_context(client: fakeredis.FakeRedis, prefix: str, clock: FakeClock, **overrides: Any) -> AppContext:
    settings = load_settings(key_prefix=prefix, katalogus_api=CLOSED_PORT_URL, octopoes_api=CLOSED_PORT_URL,
                             bytes_api=CLOSED_PORT_URL, queue_uri="amqp://guest:guest@127.0.0.1:9/%2F",
                             lease_seconds=60, pull_lease_seconds=60, **overrides)
    return AppContext.create(settings, redis_client=client, clock_ms=clock)


@pytest.fixture
def context(fake_redis: fakeredis.FakeRedis, key_prefix: str, clock: FakeClock) -> AppContext:
    return make_context(fake_redis, key_prefix, clock)


@pytest.fixture
def api(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context, ApiSettings(api_token=None, reap_interval_seconds=0))) as client:
        yield client


def push(api: TestClient, data: dict[str, Any] | None = None, scheduler: str = "boefje", **fields: Any) -> Any:
    data = data if data is not None else boefje_data()
    body = {"organisation": fields.pop("organisation", data.get("organization", "org1")), "data": data, **fields}
    return api.post(f"/schedulers/{scheduler}/push", json=body)


def pushed(api: TestClient, data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    response = push(api, data, **fields)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


# -- schedulers -------------------------------------------------------------------------------------


def test_schedulers_are_the_three_kinds_with_their_queue_size(api: TestClient) -> None:
    pushed(api)
    answer = api.get("/schedulers").json()
    assert [(s["id"], s["type"], s["item_type"], s["qsize"]) for s in answer] == [
        ("boefje", "boefje", "BoefjeTask", 1), ("normalizer", "normalizer", "NormalizerTask", 0),
        ("report", "report", "ReportTask", 0)]
    assert answer[0]["last_activity"] is not None and answer[1]["last_activity"] is None
    assert api.get("/schedulers/normalizer").json()["qsize"] == 0
    assert api.get("/schedulers/nope").status_code == 404


# -- push -------------------------------------------------------------------------------------------


def test_push_answers_the_queued_task_whose_id_is_the_payloads(api: TestClient) -> None:
    task_id = str(uuid.uuid4())
    task = pushed(api, boefje_data(ooi="Hostname|internet|a.example"), id=task_id)
    assert task["id"] == task["data"]["id"] == task_id
    assert task["status"] == "queued" and task["scheduler_id"] == "boefje" and task["type"] == "boefje"
    assert task["organisation"] == "org1"
    assert task["hash"] == BoefjeTask.model_validate(task["data"]).hash
    assert api.get(f"/tasks/{task_id}").json()["status"] == "queued"


def test_priorities_compare_as_openkat_clients_expect(api: TestClient) -> None:
    manual = pushed(api, priority=1)["priority"]
    automatic = pushed(api)["priority"]
    later = pushed(api, priority=5)["priority"]
    much_later = pushed(api, priority=10**9)["priority"]
    assert manual < 0 < automatic < later < much_later
    assert much_later - automatic == 3600 * 1000  # the offset is capped at an hour
    first = api.post("/schedulers/boefje/pop").json()["results"][0]
    assert first["priority"] == manual


def test_push_refusals_name_the_reason(api: TestClient) -> None:
    cases = [
        (push(api, {"boefje": {"id": "x"}}), 400, "organization"),  # payload lacks a field
        (push(api, boefje_data(), organisation="other"), 400, "organisation"),
        (push(api, {**boefje_data(), "id": "not-a-uuid"}), 400, "data.id"),
        (push(api, {**boefje_data(), "id": str(uuid.uuid4())}, id=str(uuid.uuid4())), 400, "id"),
        (push(api, boefje_data(org="bad:org")), 400, "organisation"),
        (api.post("/schedulers/boefje/push", json={"data": boefje_data()}), 400, "organisation"),
        (api.post("/schedulers/boefje/push", content=b"{not json", headers={"content-type": "application/json"}),
         400, None),
        (push(api, scheduler="nope"), 404, None),
        (push(api, normalizer_task().model_dump(mode="json"), scheduler="boefje"), 400, "boefje"),
    ]
    for response, status, field in cases:
        assert response.status_code == status, response.text
        assert response.json()["detail"]
        if field:
            assert field in response.json()["detail"]


def test_a_second_push_of_the_same_work_is_409_with_retry_after(api: TestClient) -> None:
    data = boefje_data(ooi="Hostname|internet|same.example")
    first = pushed(api, data)
    again = push(api, dict(data))
    assert again.status_code == 409
    assert first["id"] in again.json()["detail"] and "queued" in again.json()["detail"]
    assert int(again.headers["Retry-After"]) > 0
    api.post("/schedulers/boefje/pop")
    assert "dispatched" in push(api, dict(data)).json()["detail"]
    taken = push(api, boefje_data(), id=first["id"])
    assert taken.status_code == 409 and "taken" in taken.json()["detail"]


def test_a_full_queue_is_429_except_for_manual_runs(fake_redis: fakeredis.FakeRedis, key_prefix: str,
                                                     clock: FakeClock) -> None:
    context = make_context(fake_redis, key_prefix, clock, pq_maxsize=1)
    with TestClient(create_app(context, ApiSettings(api_token=None))) as api:
        pushed(api)
        full = push(api, priority=3)
        assert full.status_code == 429 and "full" in full.json()["detail"] and full.headers["Retry-After"]
        assert push(api, priority=1).status_code == 201


def test_normalizer_tasks_are_pushed_and_popped_on_their_own_scheduler(api: TestClient) -> None:
    data = normalizer_task(org="org2").model_dump(mode="json")
    task = pushed(api, data, scheduler="normalizer", organisation="org2")
    assert task["scheduler_id"] == "normalizer" and task["organisation"] == "org2"
    assert api.post("/schedulers/boefje/pop").json() == {"results": []}
    assert api.post("/schedulers/normalizer/pop").json()["results"][0]["id"] == task["id"]


# -- pop --------------------------------------------------------------------------------------------


def test_pop_hands_out_dispatched_tasks_and_an_empty_list_when_none_are_queued(api: TestClient) -> None:
    assert api.post("/schedulers/boefje/pop").json() == {"results": []}
    ids = {pushed(api)["id"] for _ in range(3)}
    popped = api.post("/schedulers/boefje/pop?limit=2").json()["results"]
    assert len(popped) == 2 and {t["status"] for t in popped} == {"dispatched"}
    rest = api.post("/schedulers/boefje/pop?limit=10").json()["results"]
    assert {t["id"] for t in popped + rest} == ids
    assert api.get("/schedulers/boefje").json()["qsize"] == 0


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "x"])
def test_pop_limit_is_bounded(api: TestClient, limit: str) -> None:
    response = api.post(f"/schedulers/boefje/pop?limit={limit}")
    assert response.status_code == 400 and "limit" in response.json()["detail"]


@pytest.mark.parametrize("condition", [
    {"column": "data", "field": "boefje__id", "operator": "in", "value": ["nmap"]},
    {"column": "data", "field": "boefje.id", "operator": "==", "value": "nmap"},
    {"column": "data.boefje.id", "operator": "eq", "value": ["nmap"]},
    {"column": "data", "field": "boefje->>id", "operator": "in", "value": ["nmap", "absent"]},
])
def test_pop_filters_on_plugin_ids_in_openkats_spellings(api: TestClient, condition: dict[str, Any]) -> None:
    pushed(api, boefje_data(boefje="dns-records"), priority=1)
    wanted = pushed(api, boefje_data(boefje="nmap"))
    popped = api.post("/schedulers/boefje/pop", json={"filters": [condition]}).json()["results"]
    assert [t["id"] for t in popped] == [wanted["id"]]


def test_pop_filters_on_oci_images_through_what_the_queued_payloads_carry(api: TestClient) -> None:
    pushed(api, boefje_data(boefje="dns-records", image="ghcr.io/minvws/kat-dns:1"), priority=1)
    nmap = pushed(api, boefje_data(boefje="nmap", image="ghcr.io/minvws/kat-nmap:1"))
    pushed(api, boefje_data(boefje="plain"))
    body = {"filters": [{"column": "data", "field": "boefje__oci_image", "operator": "in",
                         "value": ["ghcr.io/minvws/kat-nmap:1", "ghcr.io/unknown:2"]}]}
    assert [t["id"] for t in api.post("/schedulers/boefje/pop?limit=5", json=body).json()["results"]] == [nmap["id"]]
    assert api.post("/schedulers/boefje/pop?limit=5", json=body).json() == {"results": []}


def test_pop_filters_combine_with_and_and_or(api: TestClient) -> None:
    a = pushed(api, boefje_data(boefje="a", image="img-a"))
    b = pushed(api, boefje_data(boefje="b", image="img-b"))
    both = {"filters": {"and": [{"column": "data", "field": "boefje__id", "operator": "in", "value": ["a", "b"]},
                                {"column": "data", "field": "boefje__oci_image", "operator": "in",
                                 "value": ["img-b"]}]}}
    assert [t["id"] for t in api.post("/schedulers/boefje/pop", json=both).json()["results"]] == [b["id"]]
    either = {"filters": {"or": [{"column": "data", "field": "boefje__id", "operator": "eq", "value": "zzz"},
                                 {"column": "data", "field": "boefje__id", "operator": "eq", "value": "a"}]}}
    assert [t["id"] for t in api.post("/schedulers/boefje/pop", json=either).json()["results"]] == [a["id"]]


@pytest.mark.parametrize("body", [
    {"filters": [{"column": "organisation", "operator": "eq", "value": "org1"}]},
    {"filters": [{"column": "data", "field": "boefje__id", "operator": "like", "value": "a%"}]},
    {"filters": [{"column": "data", "field": "boefje__id", "operator": "~~~", "value": "a"}]},
    {"filters": [{"column": "data", "field": "boefje__id", "operator": "in", "value": [1, 2]}]},
    {"filters": {"not": [{"column": "data", "field": "boefje__id", "operator": "eq", "value": "a"}]}},
    {"filters": {"xor": []}},
    {"filters": "everything"},
])
def test_pop_filters_a_claim_cannot_honour_are_400(api: TestClient, body: dict[str, Any]) -> None:
    pushed(api)
    response = api.post("/schedulers/boefje/pop", json=body)
    assert response.status_code == 400 and response.json()["detail"]
    assert api.get("/schedulers/boefje").json()["qsize"] == 1


def test_an_expired_lease_brings_a_popped_task_back_on_the_next_pop(api: TestClient, clock: FakeClock) -> None:
    task = pushed(api)
    assert api.post("/schedulers/boefje/pop").json()["results"][0]["attempts"] == 1
    assert api.post("/schedulers/boefje/pop").json() == {"results": []}
    clock.advance(61)
    again = api.post("/schedulers/boefje/pop").json()["results"]
    assert [(t["id"], t["attempts"]) for t in again] == [(task["id"], 2)]


# -- PATCH /tasks -----------------------------------------------------------------------------------


def patch(api: TestClient, task_id: str, status: str) -> Any:
    return api.patch(f"/tasks/{task_id}", json={"status": status})


def test_a_pull_runner_moves_its_task_through_running_to_completed(api: TestClient, context: AppContext) -> None:
    task = pushed(api)
    api.post("/schedulers/boefje/pop")
    assert patch(api, task["id"], "running").json()["status"] == "running"
    assert patch(api, task["id"], "running").status_code == 200  # a heartbeat renews the lease
    done = patch(api, task["id"], "completed")
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert patch(api, task["id"], "completed").status_code == 200  # a retried PATCH is harmless
    assert context.boefjes.in_flight() == 0
    assert pushed(api, dict(task["data"], id=str(uuid.uuid4())))["status"] == "queued"  # identity is free


def test_failed_and_released_tasks(api: TestClient) -> None:
    failing, released = pushed(api), pushed(api)
    api.post("/schedulers/boefje/pop?limit=2")
    assert patch(api, failing["id"], "failed").json()["status"] == "failed"
    assert patch(api, released["id"], "queued").json()["status"] == "queued"
    assert [t["id"] for t in api.post("/schedulers/boefje/pop").json()["results"]] == [released["id"]]


def test_cancelling_takes_a_queued_task_off_its_queue_but_not_a_running_one(api: TestClient) -> None:
    queued, running = pushed(api), pushed(api, priority=1)
    api.post("/schedulers/boefje/pop")
    patch(api, running["id"], "running")
    assert patch(api, queued["id"], "cancelled").json()["status"] == "cancelled"
    refused = patch(api, running["id"], "cancelled")
    assert refused.status_code == 409 and "only queued" in refused.json()["detail"]
    assert api.get("/schedulers/boefje").json()["qsize"] == 0


def test_bad_transitions_are_4xx_with_a_reason(api: TestClient) -> None:
    task = pushed(api)
    not_popped = patch(api, task["id"], "completed")
    assert not_popped.status_code == 409 and "pop it first" in not_popped.json()["detail"]
    assert patch(api, task["id"], "dispatched").status_code == 400
    assert patch(api, task["id"], "pending").status_code == 400
    assert patch(api, task["id"], "sleeping").status_code == 400
    assert api.patch(f"/tasks/{task['id']}", json={"status": "running", "priority": 3}).status_code == 400
    assert api.patch(f"/tasks/{task['id']}", json={}).status_code == 400
    assert patch(api, str(uuid.uuid4()), "running").status_code == 404
    api.post("/schedulers/boefje/pop")
    patch(api, task["id"], "completed")
    finished = patch(api, task["id"], "running")
    assert finished.status_code == 409 and "completed" in finished.json()["detail"]


# -- GET /tasks -------------------------------------------------------------------------------------


def test_the_answers_rendered_from_records_are_the_task_model(api: TestClient, context: AppContext) -> None:
    for task in (pushed(api, {**boefje_data(), "extra": [1, None]}),
                 pushed(api, normalizer_task(org="org1").model_dump(mode="json"), scheduler="normalizer")):
        record = context.queues[task["type"]].records.get(task["id"])
        assert record is not None
        assert record.to_document() == record.to_task().model_dump(mode="json") == task


def test_get_task_by_id_or_404(api: TestClient) -> None:
    task = pushed(api)
    assert api.get(f"/tasks/{task['id']}").json()["id"] == task["id"]
    assert api.get(f"/tasks/{uuid.uuid4()}").status_code == 404


def test_task_listing_filters_and_pages(api: TestClient, clock: FakeClock) -> None:
    org1 = [pushed(api, boefje_data(org="org1")) for _ in range(3)]
    clock.advance(10)
    org2 = [pushed(api, boefje_data(org="org2")) for _ in range(2)]
    normalizer = pushed(api, normalizer_task(org="org1").model_dump(mode="json"), scheduler="normalizer")
    everything = api.get("/tasks").json()
    assert everything["count"] == 6 and everything["next"] is None and everything["previous"] is None
    first = api.get("/tasks?limit=4").json()
    assert first["count"] == 6 and len(first["results"]) == 4 and "offset=4" in first["next"]
    second = api.get(first["next"]).json()
    assert len(second["results"]) == 2 and "offset=0" in second["previous"]
    assert {t["id"] for t in first["results"] + second["results"]} == {t["id"] for t in [*org1, *org2, normalizer]}
    assert api.get("/tasks?organisation=org2").json()["count"] == 2
    assert api.get("/tasks?scheduler_id=normalizer").json()["results"][0]["id"] == normalizer["id"]
    assert api.get("/tasks?task_type=boefje&organisation=org1").json()["count"] == 3
    api.post("/schedulers/boefje/pop")
    assert api.get("/tasks?status=dispatched").json()["count"] == 1
    assert api.get("/tasks?status=queued&scheduler_id=boefje").json()["count"] == 4
    since = datetime.fromtimestamp(clock.now_ms / 1000, tz=UTC) - timedelta(seconds=1)
    assert api.get("/tasks", params={"min_created_at": since.isoformat()}).json()["count"] == 3
    assert api.get("/tasks", params={"max_created_at": since.isoformat()}).json()["count"] == 3


@pytest.mark.parametrize("query", [
    "min_created_at=2030-01-02T00:00:00Z&max_created_at=2030-01-01T00:00:00Z",
    "limit=1001", "limit=-1", "offset=-1", "status=sleeping",
    "min_created_at=yesterday", "max_created_at=9999-12-31T23:59:59-23:59",
])
def test_task_listing_refuses_bad_queries(api: TestClient, query: str) -> None:
    response = api.get(f"/tasks?{query}")
    assert response.status_code == 400 and response.json()["detail"]


def test_a_count_only_listing_and_one_of_no_scheduler(api: TestClient) -> None:
    for _ in range(3):
        pushed(api)
    count_only = api.get("/tasks?limit=0").json()
    assert count_only == {"count": 3, "next": None, "previous": None, "results": []}
    for query in ("scheduler_id=report", "task_type=report"):  # as OpenKAT's scheduler: nothing matches
        assert api.get(f"/tasks?{query}").json()["count"] == 0


def test_a_date_alone_as_the_end_of_a_window_means_the_end_of_that_day(api: TestClient, clock: FakeClock) -> None:
    pushed(api)
    today = datetime.fromtimestamp(clock.now_ms / 1000, tz=UTC).date().isoformat()
    assert api.get("/tasks", params={"min_created_at": today, "max_created_at": today}).json()["count"] == 1


def test_task_stats_count_tasks_by_the_hour_of_their_last_change(api: TestClient, clock: FakeClock) -> None:
    """As OpenKAT's scheduler: tasks changed in the last 24 hours, by the hour of their last change and the
    status they have now, only hours that have tasks, newest first."""
    clock.advance(-26 * 3600)
    pushed(api, normalizer_task(org="org1").model_dump(mode="json"), scheduler="normalizer")  # too long ago
    clock.advance(24 * 3600)
    dispatched = pushed(api, boefje_data(org="org1"))
    untouched = pushed(api, normalizer_task(org="org2").model_dump(mode="json"), scheduler="normalizer",
                       organisation="org2")
    clock.advance(2 * 3600)
    done, given_back = pushed(api, boefje_data(org="org1")), pushed(api, boefje_data(org="org2"))
    assert len(api.post("/schedulers/boefje/pop?limit=3").json()["results"]) == 3
    patch(api, done["id"], "completed")
    patch(api, given_back["id"], "queued")
    stats = api.get("/tasks/stats").json()
    now_hour, two_ago = list(stats)
    assert datetime.fromisoformat(now_hour) - datetime.fromisoformat(two_ago) == timedelta(hours=2)
    assert datetime.fromisoformat(now_hour).tzinfo is not None and now_hour.endswith("+00:00")
    assert stats[now_hour] == {"pending": 0, "queued": 1, "dispatched": 1, "running": 0, "completed": 1,
                               "failed": 0, "cancelled": 0, "total": 3}
    assert (stats[two_ago]["queued"], stats[two_ago]["total"]) == (1, 1)
    assert dispatched["id"] and untouched["id"]
    org2 = api.get("/tasks/stats?organisation_id=org2").json()
    assert (org2[now_hour]["total"], org2[now_hour]["queued"], org2[two_ago]["queued"]) == (1, 1, 1)
    assert list(api.get("/tasks/stats?scheduler_id=boefje").json()) == [now_hour]
    assert api.get("/tasks/stats?scheduler_id=report").json() == {}


# -- schedules --------------------------------------------------------------------------------------


def schedule(api: TestClient, **fields: Any) -> Any:
    body = {"scheduler_id": "boefje", "organisation": "org1", "data": boefje_data(), **fields}
    return api.post("/schedules", json=body)


def test_a_schedule_is_created_with_the_payloads_identity_and_a_cron_deadline(api: TestClient,
                                                                             clock: FakeClock) -> None:
    data = boefje_data(ooi="Hostname|internet|sched.example")
    created = schedule(api, data=data, schedule="0 * * * *")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["hash"] == BoefjeTask.model_validate(data).hash and body["enabled"] is True
    deadline = datetime.fromisoformat(body["deadline_at"])
    now = datetime.fromtimestamp(clock.now_ms / 1000, tz=UTC)
    assert now < deadline <= now + timedelta(hours=1) and deadline.minute == 0
    assert api.get(f"/schedules/{body['id']}").json() == body


def test_schedule_refusals(api: TestClient) -> None:
    data = boefje_data(ooi="Hostname|internet|dup.example")
    holder = schedule(api, data=data).json()["id"]
    duplicate = schedule(api, data=dict(data))
    assert duplicate.status_code == 409 and holder in duplicate.json()["detail"]
    for cron in ("every hour", "61 * * * *", "0 0 30 2 *", ""):
        bad = schedule(api, schedule=cron)
        assert bad.status_code == 400 and "schedule" in bad.json()["detail"], cron
    assert schedule(api, scheduler_id="nope").status_code == 400
    assert schedule(api, organisation="org2").status_code == 400
    assert schedule(api, data={"boefje": {}}).status_code == 400
    assert schedule(api, deadline_at="not a time").status_code == 400
    assert api.get(f"/schedules/{uuid.uuid4()}").status_code == 404
    assert api.delete(f"/schedules/{uuid.uuid4()}").status_code == 404


def test_patching_a_schedule(api: TestClient) -> None:
    created = schedule(api, schedule="0 * * * *").json()
    other = schedule(api).json()
    moved = api.patch(f"/schedules/{created['id']}", json={"enabled": False, "schedule": "30 2 * * *"}).json()
    assert moved["enabled"] is False and moved["schedule"] == "30 2 * * *"
    deadline = datetime.fromisoformat(moved["deadline_at"])
    assert (deadline.hour, deadline.minute) == (2, 30)
    assert api.get(f"/schedules/{created['id']}").json() == moved
    assert api.patch(f"/schedules/{created['id']}", json={"schedule": "bad"}).status_code == 400
    assert api.patch(f"/schedules/{created['id']}", json={"hash": "x"}).status_code == 400
    clash = api.patch(f"/schedules/{created['id']}", json={"data": other["data"]})
    assert clash.status_code == 409 and other["id"] in clash.json()["detail"]
    new_data = boefje_data(ooi="Hostname|internet|new.example")
    rehashed = api.patch(f"/schedules/{created['id']}", json={"data": new_data}).json()
    assert rehashed["hash"] == BoefjeTask.model_validate(new_data).hash
    assert api.patch(f"/schedules/{uuid.uuid4()}", json={"enabled": True}).status_code == 404


def test_what_a_person_sets_on_a_schedule_is_marked_as_theirs(api: TestClient) -> None:
    """The scheduler queues the same work again later and then moves the schedule on; the fields a person
    set (person_set) it leaves as they are."""
    created = schedule(api, schedule="0 3 * * *").json()
    assert created["person_set"] == ["schedule"]
    paused = api.patch(f"/schedules/{created['id']}", json={"enabled": False}).json()
    assert paused["person_set"] == ["enabled", "schedule"]
    assert schedule(api, data=boefje_data(ooi="Hostname|internet|plain.example")).json()["person_set"] == []


def test_a_normalizer_schedule_is_refused_with_the_reason(api: TestClient) -> None:
    """Normalizer tasks follow raw files; the beat runs no normalizer schedules, so one would stay due."""
    refused = api.post("/schedules", json={"scheduler_id": "normalizer", "organisation": "org1",
                                           "data": normalizer_task(org="org1").model_dump(mode="json"),
                                           "schedule": "0 * * * *"})
    assert refused.status_code == 400, refused.text
    assert "never run" in refused.json()["detail"]
    assert api.get("/schedules").json()["count"] == 0


def test_deleting_a_schedule_keeps_its_tasks(api: TestClient, context: AppContext) -> None:
    created = schedule(api).json()
    task = BoefjeTask.model_validate(created["data"])
    assert context.boefjes.push(task, 1, schedule_id=created["id"]).accepted
    assert api.delete(f"/schedules/{created['id']}").status_code == 204
    assert api.get(f"/schedules/{created['id']}").status_code == 404
    kept = api.get(f"/tasks/{task.id}").json()
    assert kept["schedule_id"] == created["id"] and kept["status"] == "queued"
    assert api.get("/schedulers/boefje").json()["qsize"] == 1


def test_listing_and_searching_schedules(api: TestClient) -> None:
    nmap = schedule(api, data=boefje_data(boefje="nmap")).json()
    schedule(api, data=boefje_data(boefje="dns-records")).json()
    org2 = schedule(api, organisation="org2", data=boefje_data(org="org2"), enabled=False).json()
    listing = api.get("/schedules").json()
    assert listing["count"] == 3 and len(listing["results"]) == 3
    assert api.get("/schedules?limit=2").json()["next"]
    assert [s["id"] for s in api.get("/schedules?organisation=org2").json()["results"]] == [org2["id"]]
    assert api.get("/schedules?enabled=false").json()["count"] == 1
    assert api.get("/schedules?scheduler_id=normalizer").json()["count"] == 0
    assert api.get("/schedules?scheduler_id=nope").status_code == 400
    found = api.post("/schedules/search", json={"filters": [
        {"column": "data", "field": "boefje__id", "operator": "eq", "value": "nmap"}]}).json()
    assert [s["id"] for s in found["results"]] == [nmap["id"]]
    liked = api.post("/schedules/search", json={"filters": [
        {"column": "organisation", "operator": "like", "value": "org%"},
        {"column": "scheduler_id", "operator": "==", "value": "boefje"}]}).json()
    assert liked["count"] == 3
    assert api.post("/schedules/search", json={"filters": [
        {"column": "x", "operator": "between", "value": 1}]}).status_code == 400


# -- health, metrics --------------------------------------------------------------------------------


class Healthy:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy

    def health(self, *args: Any) -> bool:
        return self.healthy

    def get_organisations(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def test_health_reports_the_service_and_on_request_its_externals(api: TestClient, context: AppContext) -> None:
    plain = api.get("/health").json()
    assert plain["service"] == "scheduler" and plain["healthy"] is True and plain["externals"] == {}
    context.katalogus, context.octopoes, context.bytes = Healthy(True), Healthy(True), Healthy(False)  # type: ignore[assignment]
    externals = api.get("/health?externals=true").json()["externals"]
    assert externals == {"katalogus": True, "octopoes": True, "bytes": False, "redis": True, "rabbitmq": False}


def test_health_is_503_when_redis_is_away(api: TestClient, context: AppContext,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(context.redis, "ping", refuse)
    response = api.get("/health")
    assert response.status_code == 503 and response.json()["healthy"] is False


def test_redis_errors_are_503_not_500(api: TestClient, context: AppContext,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(context.redis, "hvals", refuse)
    for command in ("evalsha", "fcall", "function_load"):
        monkeypatch.setattr(context.redis, command, refuse)
    for response in (api.get("/schedulers"), push(api)):
        assert response.status_code == 503 and "Redis" in response.json()["detail"]


def test_metrics_show_queue_depths_per_organisation(api: TestClient) -> None:
    pushed(api, boefje_data(org="org1"))
    pushed(api, boefje_data(org="org1"))
    pushed(api, boefje_data(org="org2"))
    api.post("/schedulers/boefje/pop")
    text = api.get("/metrics").text
    assert 'kat_scheduler_queue_depth{kind="boefje",organisation="org1"}' in text
    assert sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kat_scheduler_queue_depth{")) == 2
    assert 'kat_scheduler_queue_in_flight{kind="boefje"} 1.0' in text
    assert 'kat_scheduler_queue_dead_letters{kind="normalizer"} 0.0' in text
    assert "kat_scheduler_redis_up 1.0" in text


def test_metrics_register_replaces_an_earlier_collector(context: AppContext) -> None:
    registry = CollectorRegistry(auto_describe=False)
    metrics.register(context, registry)
    metrics.register(context, registry)
    context.boefjes.push(BoefjeTask.model_validate(boefje_data()), 1)
    assert generate_latest(registry).decode().count("kat_scheduler_queue_depth{") == 1


# -- security and limits ----------------------------------------------------------------------------


def test_a_token_guards_everything_but_health(context: AppContext) -> None:
    with TestClient(create_app(context, ApiSettings(api_token="s3cret"))) as api:
        assert api.get("/health").status_code == 200
        assert api.get("/openapi.json").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"}):
            response = api.get("/schedulers", headers=headers)
            assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert api.get("/metrics").status_code == 401
        assert api.post("/schedulers/boefje/pop").status_code == 401
        assert api.get("/schedulers", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_an_open_api_says_so_at_start_up(context: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    # an in-thread Celery worker of an earlier test may have left the root logger at ERROR
    caplog.set_level(logging.WARNING, logger="kat_scheduler.server.app")
    create_app(context, ApiSettings(api_token=None))
    assert "SCHEDULER_API_TOKEN is not set" in caplog.text


def test_bodies_over_the_limit_are_413(context: AppContext) -> None:
    with TestClient(create_app(context, ApiSettings(max_body_bytes=1000))) as api:
        big = json.dumps({"organisation": "org1", "data": boefje_data(ooi="x" * 2000)}).encode()
        assert api.post("/schedulers/boefje/push", content=big,
                        headers={"content-type": "application/json"}).status_code == 413

        def chunks() -> Iterator[bytes]:
            yield big[:600]
            yield big[600:]

        chunked = api.post("/schedulers/boefje/push", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and "1000 bytes" in chunked.json()["detail"]
        assert api.get("/schedulers/boefje").json()["qsize"] == 0
        assert push(api).status_code == 201  # a small body passes


# -- the OpenAPI document ---------------------------------------------------------------------------


def test_the_committed_openapi_document_is_the_generated_one() -> None:
    committed = Path(__file__).parents[2] / "docs" / "openapi.json"
    assert committed.read_text() == render(), "regenerate: python -m kat_scheduler.server.openapi > docs/openapi.json"


def test_the_served_openapi_documents_400_not_422(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    push_responses = document["paths"]["/schedulers/{scheduler_id}/push"]["post"]["responses"]
    assert {"201", "400", "404", "409", "429"} <= set(push_responses) and "422" not in push_responses


def test_the_cli_has_an_api_command() -> None:
    from kat_scheduler.cli import build_parser

    args = build_parser().parse_args(["api", "--host", "127.0.0.1", "--port", "8123"])
    assert (args.command, args.host, args.port) == ("api", "127.0.0.1", 8123)
