"""OpenKAT's web UI (Rocky) as a client: manual runs, the task lists, a task's page, the stats.

What Rocky sends, as seen from its scheduler client:
- a manual run is `POST /schedulers/{id}/push` with `Content-Type: application/json` and a body with
  `scheduler_id`, `organisation`, `priority: 1` and a `data` whose `id` and `deduplication_key` are
  null and which names its `type`; a run again of an earlier task carries a new id as `id` and `data.id`;
- every task list is `POST /tasks` with the query (`limit`, `offset`, `scheduler_id`, `task_type`,
  `status`, `min_created_at` and `max_created_at` as dates, `input_ooi`) and a filter body that scopes it
  to the organisation (`==`), or to the user's organisations (`in`), plus conditions on
  `data.boefje__id` / `data.normalizer__id` (a plugin's page) or `data.input_ooi` (an object's page);
  `limit=0` asks for the count alone; without filters the body is empty;
- the stats are `GET /tasks/stats?scheduler_id=..[&organisation_id=..]`, summed over organisations by
  Rocky itself; `GET /queues` lists the queues.
Rocky then reads the answers into its own models: a Task has a UUID id, an int priority, one of the
seven statuses, and a payload that is a boefje, normalizer or report task.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

STATUSES = {"pending", "queued", "dispatched", "running", "completed", "failed", "cancelled"}
JSON = {"Content-Type": "application/json"}


def manual_boefje_run(org: str, ooi: str, boefje: str = "dns-records") -> bytes:
    body = {"scheduler_id": "boefje", "organisation": org, "priority": 1,
            "data": {"type": "boefje", "id": None, "boefje": {"id": boefje, "name": "DNS records", "version": None,
                                                               "oci_image": None},
                     "input_ooi": ooi, "organization": org, "deduplication_key": None}}
    return json.dumps(body).encode()


def manual_normalizer_run(org: str, ooi: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    raw_data = {"id": str(uuid.uuid4()), "secure_hash": None, "hash_retrieval_link": None,
                "mime_types": [{"value": "boefje/dns-records"}],
                "boefje_meta": {"id": str(uuid.uuid4()), "boefje": {"id": "dns-records", "name": None,
                                                                    "version": None, "oci_image": None},
                                "input_ooi": ooi, "arguments": {}, "organization": org, "started_at": now,
                                "ended_at": now}}
    body = {"scheduler_id": "normalizer", "organisation": org, "priority": 1,
            "data": {"type": "normalizer", "id": None, "normalizer": {"id": "kat_dns_normalize", "name": None,
                                                                       "version": None},
                     "raw_data": raw_data}}
    return json.dumps(body).encode()


def push(http: httpx.Client, scheduler: str, body: bytes) -> httpx.Response:
    return http.post(f"/schedulers/{scheduler}/push", content=body, headers=JSON)


def task_list(http: httpx.Client, conditions: list[dict[str, Any]] | None, **query: Any) -> dict[str, Any]:
    """A task list as Rocky asks for one: the query without its empty values, the conditions as body."""
    params = {key: value for key, value in query.items() if value is not None}
    response = http.post("/tasks", params=params, json={"filters": conditions} if conditions else None)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    for task in page["results"]:
        assert_reads_as_rockys_task(task)
    return page


def in_org(org: str, *more: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"column": "organisation", "operator": "==", "value": org}, *more]


def assert_reads_as_rockys_task(task: dict[str, Any]) -> None:
    uuid.UUID(task["id"])
    assert isinstance(task["priority"], int) and task["status"] in STATUSES
    assert isinstance(task["scheduler_id"], str) and isinstance(task["organisation"], str)
    datetime.fromisoformat(task["created_at"]), datetime.fromisoformat(task["modified_at"])
    data = task["data"]
    if "boefje" in data:
        assert isinstance(data["boefje"]["id"], str) and isinstance(data["organization"], str)
    elif "normalizer" in data:
        uuid.UUID(data["raw_data"]["id"]), uuid.UUID(data["raw_data"]["boefje_meta"]["id"])
        assert isinstance(data["raw_data"]["boefje_meta"]["arguments"], dict)
        assert all(isinstance(m, dict) for m in data["raw_data"]["mime_types"])
    else:
        pytest.fail(f"a payload Rocky cannot read: {data}")


def test_a_manual_boefje_run_is_queued_with_the_payload_as_sent(http: httpx.Client, org: str) -> None:
    response = push(http, "boefje", manual_boefje_run(org, "Hostname|internet|a.example"))
    assert response.status_code == 201, response.text
    task = response.json()
    assert_reads_as_rockys_task(task)
    assert task["id"] == task["data"]["id"] and task["status"] == "queued" and task["organisation"] == org
    stored = http.get(f"/tasks/{task['id']}").json()
    assert stored["data"]["type"] == "boefje" and stored["data"]["deduplication_key"] is None
    assert stored["data"]["boefje"] == {"id": "dns-records", "name": "DNS records", "version": None,
                                        "oci_image": None}


def test_the_same_manual_run_twice_is_a_conflict(http: httpx.Client, org: str) -> None:
    body = manual_boefje_run(org, "Hostname|internet|twice.example")
    assert push(http, "boefje", body).status_code == 201
    assert push(http, "boefje", body).status_code == 409


def test_a_manual_normalizer_run_and_a_run_again_of_a_task(http: httpx.Client, org: str) -> None:
    assert push(http, "normalizer", manual_normalizer_run(org, "Hostname|internet|n.example")).status_code == 201
    first = push(http, "boefje", manual_boefje_run(org, "Hostname|internet|again.example")).json()
    assert http.patch(f"/tasks/{first['id']}", json={"status": "cancelled"}).status_code == 200
    new_id = str(uuid.uuid4())
    again = {"id": new_id, "scheduler_id": "boefje", "organisation": org, "priority": 1,
             "data": {**first["data"], "id": new_id}}
    response = push(http, "boefje", json.dumps(again).encode())
    assert response.status_code == 201, response.text
    assert response.json()["id"] == new_id


def test_task_lists_show_one_organisation_and_count_exactly(http: httpx.Client, org: str) -> None:
    other = f"{org}-other"
    for n in range(3):
        push(http, "boefje", manual_boefje_run(org, f"Hostname|internet|list{n}.example"))
    push(http, "boefje", manual_boefje_run(org, "Hostname|internet|nmap.example", boefje="nmap"))
    push(http, "boefje", manual_boefje_run(other, "Hostname|internet|list0.example"))
    push(http, "normalizer", manual_normalizer_run(org, "Hostname|internet|list0.example"))
    query = {"scheduler_id": "boefje", "task_type": "boefje"}

    assert task_list(http, in_org(org), limit=0, **query) == {"count": 4, "next": None, "previous": None,
                                                              "results": []}
    page = task_list(http, in_org(org), limit=2, offset=0, **query)
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"] and page["previous"] is None
    rest = task_list(http, in_org(org), limit=2, offset=2, **query)
    assert {t["organisation"] for t in page["results"] + rest["results"]} == {org}

    plugin_page = in_org(org, {"column": "data", "field": "boefje__id", "operator": "==", "value": "nmap"})
    assert [t["data"]["boefje"]["id"] for t in task_list(http, plugin_page, limit=50, **query)["results"]] == ["nmap"]
    object_page = in_org(org, {"column": "data", "field": "input_ooi", "operator": "==",
                               "value": "Hostname|internet|list0.example"})
    assert task_list(http, object_page, limit=50, **query)["count"] == 1
    normalizers = task_list(http, in_org(org), limit=50, scheduler_id="normalizer", task_type="normalizer")
    assert [t["type"] for t in normalizers["results"]] == ["normalizer"]
    assert task_list(http, in_org(org), limit=50, input_ooi="LIST1", **query)["count"] == 1
    today = datetime.now(UTC).date().isoformat()
    assert task_list(http, in_org(org), limit=50, min_created_at=today, max_created_at=today, **query)["count"] == 4
    assert task_list(http, in_org(org), limit=50, status="dispatched", **query)["count"] == 0

    users_orgs = [{"column": "organisation", "operator": "in", "value": [org, other]}]
    assert Counter(t["organisation"] for t in task_list(http, users_orgs, limit=50, task_type="boefje")["results"]) \
        == {org: 4, other: 1}


def test_no_filter_shows_another_organisations_tasks_to_a_scoped_list(http: httpx.Client, org: str) -> None:
    other = f"{org}-victim"
    push(http, "boefje", manual_boefje_run(other, "Hostname|internet|secret.example"))
    push(http, "boefje", manual_boefje_run(org, "Hostname|internet|mine.example"))
    attempts = [
        in_org(org, {"column": "organisation", "operator": "==", "value": other}),
        in_org(org, {"column": "organisation", "operator": "in", "value": [other]}),
    ]
    for conditions in attempts:
        assert task_list(http, conditions, limit=50)["results"] == []
    widened = http.post("/tasks", params={"limit": 50}, json={"filters": {
        "and": in_org(org), "or": [{"column": "organisation", "operator": "==", "value": other}]}})
    assert {t["organisation"] for t in widened.json()["results"]} <= {org}
    assert {t["organisation"] for t in task_list(http, in_org(org), limit=50)["results"]} == {org}


def test_a_tasks_page_and_its_stats(http: httpx.Client, org: str) -> None:
    task = push(http, "boefje", manual_boefje_run(org, "Hostname|internet|stats.example")).json()
    details = http.get(f"/tasks/{task['id']}")
    assert details.status_code == 200 and details.json()["organisation"] == org
    assert http.get(f"/tasks/{uuid.uuid4()}").status_code == 404

    mine = http.get("/tasks/stats", params={"scheduler_id": "boefje", "organisation_id": org}).json()
    (hour, counts), = mine.items()
    assert datetime.fromisoformat(hour).tzinfo is not None
    assert counts["queued"] == 1 and counts["total"] == 1 and set(counts) == STATUSES | {"total"}
    everyone = http.get("/tasks/stats", params={"scheduler_id": "boefje"}).json()
    assert everyone[hour]["total"] >= 1


def test_the_queues_and_the_health(http: httpx.Client, org: str) -> None:
    push(http, "boefje", manual_boefje_run(org, "Hostname|internet|queues.example"))
    queues = http.get("/queues").json()
    assert {q["id"] for q in queues} >= {"boefje", "normalizer"}
    assert all(isinstance(q["size"], int) for q in queues)
    assert next(q for q in queues if q["id"] == "boefje")["size"] >= 1
    health = http.get("/health").json()
    assert health["service"] == "scheduler" and health["healthy"] is True
