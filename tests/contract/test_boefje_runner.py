"""OpenKAT's pull runners (the boefje and normalizer workers) as clients.

What a runner does, as seen from its scheduler client and worker manager:
- it pops with `POST /schedulers/{boefje|normalizer}/pop?limit=1`, with no body at all when it filters
  on nothing, else with `{"filters": [{"column": "data", "field": "boefje__id" (or "boefje__oci_image"),
  "operator": "in", "value": [...]}]}`, the same filter on both queues;
- it keeps up to pool size + 1 popped tasks waiting, still dispatched, until one of its worker processes
  is free; a worker PATCHes `{"status": "running"}` once when it starts a task and sends nothing more
  until the task ends; then it GETs the task and PATCHes `completed` or `failed` only if the task is still
  `running`;
- when a worker process dies it PATCHes that task `failed`; when it stops it pushes every waiting task
  back, as the whole Task it popped (with status, hash and times) and with no Content-Type header;
- it reads each popped task into its own model: a UUID id, `schedule_id` present, one of the seven
  statuses, `type`, the times, and a payload with a UUID id, a non-empty plugin id and the organisation.

This module's API holds a task forwarded to a Celery runner for 1 s without word (SCHEDULER_LEASE_SECONDS)
and a task popped by a pull runner for 3 s (SCHEDULER_PULL_LEASE_SECONDS), so that a pull runner's
silence outlasts the first and the second can run out within a test.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.factories.waiting import wait_for

STATUSES = {"pending", "queued", "dispatched", "running", "completed", "failed", "cancelled"}
CELERY_LEASE_SECONDS = 1.0
PULL_LEASE_SECONDS = 3.0


@pytest.fixture(scope="module")
def api_env() -> dict[str, str]:
    return {"SCHEDULER_LEASE_SECONDS": str(CELERY_LEASE_SECONDS),
            "SCHEDULER_PULL_LEASE_SECONDS": str(PULL_LEASE_SECONDS), "SCHEDULER_API_REAP_INTERVAL": "0"}


class Runner:
    """The calls a pull runner makes, with the bodies and headers it sends them with."""

    def __init__(self, http: httpx.Client, queue: str = "boefje", plugins: list[str] | None = None) -> None:
        self.http, self.queue, self.plugins = http, queue, plugins

    def pop(self) -> list[dict[str, Any]]:
        conditions = [{"column": "data", "field": "boefje__id", "operator": "in", "value": self.plugins}] \
            if self.plugins else []
        response = self.http.post(f"/schedulers/{self.queue}/pop", params={"limit": 1},
                                  json={"filters": conditions} if conditions else None)
        response.raise_for_status()
        results: list[dict[str, Any]] = response.json()["results"]
        for task in results:
            assert_reads_as_runners_task(task)
        return results

    def patch(self, task_id: str, status: str) -> httpx.Response:
        return self.http.patch(f"/tasks/{task_id}", json={"status": status})

    def status(self, task_id: str) -> str:
        response = self.http.get(f"/tasks/{task_id}")
        response.raise_for_status()
        return str(response.json()["status"])

    def finish(self, task_id: str, status: str = "completed") -> bool:
        """As a worker ends a task: only a task that is still running is patched."""
        if self.status(task_id) != "running":
            return False
        self.patch(task_id, status).raise_for_status()
        return True

    def push_back(self, task: dict[str, Any]) -> httpx.Response:
        """The whole popped Task as its JSON, without a Content-Type header (httpx's `content=`)."""
        return self.http.post(f"/schedulers/{task['scheduler_id']}/push", content=json.dumps(task).encode())


def assert_reads_as_runners_task(task: dict[str, Any]) -> None:
    uuid.UUID(task["id"])
    assert "schedule_id" in task and task["status"] in STATUSES and isinstance(task["type"], str)
    assert isinstance(task["priority"], int) and isinstance(task["organisation"], str)
    datetime.fromisoformat(task["created_at"]), datetime.fromisoformat(task["modified_at"])
    data = task["data"]
    assert data["id"] == task["id"]
    plugin = data.get("boefje") or data.get("normalizer")
    assert plugin and isinstance(plugin["id"], str) and plugin["id"]
    if "boefje" in data:
        assert isinstance(data["organization"], str)
    else:
        uuid.UUID(data["raw_data"]["id"])
        assert isinstance(data["raw_data"]["boefje_meta"]["organization"], str)


def queue_boefje(http: httpx.Client, org: str, ooi: str, boefje: str = "dns-records") -> str:
    body = {"organisation": org, "data": {"boefje": {"id": boefje}, "input_ooi": ooi, "organization": org}}
    response = http.post("/schedulers/boefje/push", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def queue_normalizer(http: httpx.Client, org: str, normalizer: str = "kat_dns_normalize") -> str:
    now = datetime.now(UTC).isoformat()
    meta = {"id": str(uuid.uuid4()), "boefje": {"id": "dns-records"}, "input_ooi": "Hostname|internet|n.example",
            "arguments": {}, "organization": org, "started_at": now, "ended_at": now}
    body = {"organisation": org, "data": {"normalizer": {"id": normalizer},
                                          "raw_data": {"id": str(uuid.uuid4()), "boefje_meta": meta,
                                                       "mime_types": [{"value": "boefje/dns-records"}]}}}
    response = http.post("/schedulers/normalizer/push", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_runner_pops_runs_and_completes_a_task(http: httpx.Client, org: str) -> None:
    task_id = queue_boefje(http, org, "Hostname|internet|run.example")
    runner = Runner(http)
    (task,) = runner.pop()
    assert task["id"] == task_id and task["status"] == "dispatched"
    assert runner.patch(task_id, "running").status_code == 200
    assert runner.finish(task_id)
    assert runner.status(task_id) == "completed"
    assert runner.pop() == []


def test_an_empty_queue_pops_an_empty_list_and_plugin_filters_hold(http: httpx.Client, org: str) -> None:
    assert Runner(http, "normalizer").pop() == []
    nmap = queue_boefje(http, org, "Hostname|internet|filter.example", boefje="nmap")
    assert Runner(http, plugins=["dns-records"]).pop() == []
    assert [t["id"] for t in Runner(http, plugins=["nmap", "dns-records"]).pop()] == [nmap]


def test_the_boefje_filter_on_the_normalizer_queue_matches_nothing_as_in_openkat(http: httpx.Client,
                                                                                org: str) -> None:
    """A normalizer runner configured with plugins sends its filter as data.boefje__id, which no
    normalizer task has; OpenKAT's scheduler answers it with nothing, and so does this one."""
    task_id = queue_normalizer(http, org)
    assert Runner(http, "normalizer", plugins=["kat_dns_normalize"]).pop() == []
    (task,) = Runner(http, "normalizer").pop()
    assert task["id"] == task_id


def test_a_stopping_runner_pushes_its_waiting_tasks_back_to_their_place(http: httpx.Client, org: str) -> None:
    first = queue_boefje(http, org, "Hostname|internet|back1.example")
    second = queue_boefje(http, org, "Hostname|internet|back2.example")
    runner = Runner(http)
    waiting = runner.pop() + runner.pop()
    assert [t["id"] for t in waiting] == [first, second]
    for task in waiting:
        hydrated = {**task, "data": {**task["data"], "arguments": {"input": {"primary_key": "x"}},
                                     "environment": {"TOKEN": "secret"}}}
        response = runner.push_back(hydrated)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
    again = runner.pop()
    assert [t["id"] for t in again] == [first]
    assert "environment" not in again[0]["data"]  # the task as it was queued, not the runner's copy
    assert runner.status(second) == "queued"


def test_a_task_given_back_by_patching_it_queued_comes_back_at_once(http: httpx.Client, org: str) -> None:
    task_id = queue_boefje(http, org, "Hostname|internet|patched-back.example")
    runner = Runner(http)
    runner.pop()
    assert runner.patch(task_id, "queued").json()["status"] == "queued"
    assert [t["id"] for t in runner.pop()] == [task_id]


def test_a_dead_worker_process_fails_its_task(http: httpx.Client, org: str) -> None:
    task_id = queue_boefje(http, org, "Hostname|internet|dead-worker.example")
    runner = Runner(http)
    runner.pop()
    runner.patch(task_id, "running")
    assert runner.status(task_id) in ("dispatched", "running")
    assert runner.patch(task_id, "failed").status_code == 200
    assert runner.status(task_id) == "failed"


def test_a_long_task_is_not_handed_to_a_second_runner_while_its_runner_is_silent(http: httpx.Client,
                                                                                 org: str) -> None:
    """Silent for longer than a Celery runner's lease, yet within the pull lease: the task stays its
    runner's, and its completion is recorded."""
    task_id = queue_boefje(http, org, "Hostname|internet|long.example")
    first, second = Runner(http, plugins=["dns-records"]), Runner(http, plugins=["dns-records"])
    first.pop()
    first.patch(task_id, "running").raise_for_status()
    silent_until = time.monotonic() + CELERY_LEASE_SECONDS * 2
    while time.monotonic() < silent_until:
        assert second.pop() == []
    assert first.finish(task_id)
    assert first.status(task_id) == "completed"


def test_a_runner_that_repeats_running_keeps_its_task(http: httpx.Client, org: str) -> None:
    task_id = queue_boefje(http, org, "Hostname|internet|heartbeat.example")
    first, second = Runner(http), Runner(http)
    first.pop()
    keep_until = time.monotonic() + PULL_LEASE_SECONDS * 1.5
    while time.monotonic() < keep_until:
        first.patch(task_id, "running").raise_for_status()
        assert [t for t in second.pop() if t["id"] == task_id] == []
        time.sleep(PULL_LEASE_SECONDS / 6)  # the pace of the runner's reports, the behaviour under test
    assert first.finish(task_id)


def test_a_gone_runners_task_returns_and_its_late_completion_is_recorded(http: httpx.Client, org: str) -> None:
    """The first runner goes silent past the pull lease: its task goes to a second runner. When the first
    one turns out to have finished after all, its completion stands, and the second runner, which checks
    before it reports, leaves it so."""
    task_id = queue_boefje(http, org, "Hostname|internet|gone.example")
    first, second = Runner(http, plugins=["dns-records"]), Runner(http, plugins=["dns-records"])
    first.pop()
    first.patch(task_id, "running").raise_for_status()
    wait_for(lambda: [t["id"] for t in second.pop()] == [task_id], timeout=PULL_LEASE_SECONDS * 3,
             what="the task of the silent runner to go to another one")
    second.patch(task_id, "running").raise_for_status()
    assert first.finish(task_id)
    assert first.status(task_id) == "completed"
    assert not second.finish(task_id, "failed")
    assert first.status(task_id) == "completed"


def test_a_late_completion_of_a_task_back_in_the_queue_is_recorded_and_not_run_again(http: httpx.Client,
                                                                                    org: str) -> None:
    task_id = queue_boefje(http, org, "Hostname|internet|late.example")
    runner = Runner(http)
    runner.pop()
    runner.patch(task_id, "running").raise_for_status()
    bystander = Runner(http, plugins=["a-boefje-nobody-queued"])  # its pops return expired leases, take nothing

    def back_in_the_queue() -> bool:
        return bystander.pop() == [] and runner.status(task_id) == "queued"

    wait_for(back_in_the_queue, timeout=PULL_LEASE_SECONDS * 3, what="the lease to run out")
    response = runner.patch(task_id, "completed")
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert [t for t in runner.pop() if t["id"] == task_id] == []
