"""Reports: a report recipe's schedule as Rocky creates it, turned into report tasks by the beat and
served to Rocky's report runner through the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from kat_scheduler.beat import KatScheduler
from kat_scheduler.context import AppContext
from kat_scheduler.kinds.report import ReportTask
from kat_scheduler.models import TaskStatus, identity_hash
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from tests.factories.tasks import FakeClock

ORG = "org1"


@pytest.fixture
def api(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context, ApiSettings(api_token=None, reap_interval_seconds=0))) as client:
        yield client


@pytest.fixture
def beat(context: AppContext) -> Iterator[KatScheduler]:
    made = KatScheduler(Celery("report-beat", broker="memory://", set_as_current=False), context=context)
    yield made
    made.close()


def now(clock: FakeClock) -> datetime:
    return datetime.fromtimestamp(clock() / 1000, tz=UTC)


def rocky_schedule(recipe_id: str, cron: str | None, deadline_at: str, org: str = ORG) -> dict[str, Any]:
    """The body Rocky's report recipe view posts (ScheduleRequest dumped without its None fields)."""
    body: dict[str, Any] = {"scheduler_id": "report", "organisation": org, "deadline_at": deadline_at,
                            "data": {"type": "report", "organisation_id": org, "report_recipe_id": recipe_id}}
    if cron is not None:
        body["schedule"] = cron
    return body


def report_tasks(context: AppContext, recipe_id: str) -> list[Any]:
    return [record for record in context.queues["report"].records.history(0, 100)
            if record.data.get("report_recipe_id") == recipe_id]


def run_pass(beat: KatScheduler) -> None:
    """One tick of the beat, which leads alone here; the pass runs every registered scheduler's steps."""
    beat._next_pass = 0.0
    beat.tick()
    assert beat.leadership.is_leader


def test_the_identity_of_a_report_is_its_recipe_in_its_organisation() -> None:
    task = ReportTask(organisation_id=ORG, report_recipe_id="r1")
    assert task.hash == identity_hash(("r1", ORG))
    assert task.hash != ReportTask(organisation_id="org2", report_recipe_id="r1").hash
    assert task.organization == ORG and task.plugin_id == "r1" and task.input_ooi is None


def test_a_cron_report_is_queued_once_when_due_popped_and_patched_then_again_at_its_next_time(
        api: TestClient, context: AppContext, beat: KatScheduler, wall_clock: FakeClock) -> None:
    recipe = str(uuid.uuid4())
    today = now(wall_clock).date().isoformat()  # Rocky's form sends a date: midnight, so due at once
    created = api.post("/schedules", json=rocky_schedule(recipe, "0 3 * * *", today))
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["hash"] == identity_hash((recipe, ORG)) and schedule["schedule"] == "0 3 * * *"
    assert api.post("/schedules", json=rocky_schedule(recipe, "0 3 * * *", today)).status_code == 409

    run_pass(beat)
    run_pass(beat)  # the schedule moved on: a second pass queues nothing
    [task] = report_tasks(context, recipe)
    assert task.status is TaskStatus.QUEUED and task.schedule_id == schedule["id"]
    moved = api.get(f"/schedules/{schedule['id']}").json()
    next_three = datetime.fromisoformat(moved["deadline_at"])
    assert next_three > now(wall_clock) and (next_three.hour, next_three.minute) == (3, 0)

    popped = api.post("/schedulers/report/pop?limit=1").json()["results"]
    assert [p["id"] for p in popped] == [task.id]
    assert popped[0]["data"]["report_recipe_id"] == recipe and popped[0]["type"] == "report"
    for status in ("running", "completed"):
        answer = api.patch(f"/tasks/{task.id}", json={"status": status})
        assert answer.status_code == 200, answer.text
    assert api.get(f"/tasks/{task.id}").json()["status"] == "completed"

    wall_clock.now_ms = int((next_three + timedelta(seconds=1)).timestamp() * 1000)
    run_pass(beat)
    tasks = report_tasks(context, recipe)
    assert len(tasks) == 2 and {t.status for t in tasks} == {TaskStatus.COMPLETED, TaskStatus.QUEUED}


def test_a_one_off_report_is_made_once_and_its_schedule_keeps_no_deadline(
        api: TestClient, context: AppContext, beat: KatScheduler, wall_clock: FakeClock) -> None:
    recipe = str(uuid.uuid4())
    created = api.post("/schedules", json=rocky_schedule(recipe, None, now(wall_clock).isoformat()))
    assert created.status_code == 201, created.text
    run_pass(beat)
    [task] = report_tasks(context, recipe)
    assert api.get(f"/schedules/{created.json()['id']}").json()["deadline_at"] is None
    api.post("/schedulers/report/pop?limit=1")
    api.patch(f"/tasks/{task.id}", json={"status": "completed"})
    wall_clock.advance(2 * 86400)  # within the records' retention
    run_pass(beat)
    assert [t.id for t in report_tasks(context, recipe)] == [task.id]


def test_a_report_schedule_in_the_future_waits_for_its_deadline(
        api: TestClient, context: AppContext, beat: KatScheduler, wall_clock: FakeClock) -> None:
    recipe = str(uuid.uuid4())
    tomorrow = (now(wall_clock) + timedelta(days=1)).date().isoformat()
    assert api.post("/schedules", json=rocky_schedule(recipe, "0 6 * * 1", tomorrow)).status_code == 201
    run_pass(beat)
    assert report_tasks(context, recipe) == []
    wall_clock.advance(2 * 86400)
    run_pass(beat)
    assert len(report_tasks(context, recipe)) == 1


def test_rocky_finds_a_recipes_schedule_by_its_recipe_id_within_its_organisation(api: TestClient) -> None:
    recipe, other = str(uuid.uuid4()), str(uuid.uuid4())
    for recipe_id, org in ((recipe, ORG), (other, ORG), (recipe, "org2")):
        body = rocky_schedule(recipe_id, "0 3 * * *", "2026-01-01", org=org)
        assert api.post("/schedules", json=body).status_code == 201
    search = {"filters": [{"column": "data", "field": "report_recipe_id", "operator": "eq", "value": recipe},
                          {"column": "organisation", "operator": "eq", "value": ORG}]}
    found = api.post("/schedules/search", json=search).json()
    assert found["count"] == 1 and found["results"][0]["data"]["report_recipe_id"] == recipe
    assert api.get("/schedules", params={"scheduler_id": "report"}).json()["count"] == 3


def test_a_report_schedule_whose_data_is_not_a_report_is_refused(api: TestClient) -> None:
    body = rocky_schedule("r1", None, "2026-01-01")
    del body["data"]["report_recipe_id"]
    answer = api.post("/schedules", json=body)
    assert answer.status_code == 400 and "report_recipe_id" in answer.text
    mismatched = rocky_schedule("r1", None, "2026-01-01")
    mismatched["data"]["organisation_id"] = "org2"
    assert api.post("/schedules", json=mismatched).status_code == 400


def test_reports_are_served_in_the_order_they_fell_due(api: TestClient, context: AppContext,
                                                       wall_clock: FakeClock) -> None:
    queue = context.queues["report"]
    first = queue.push(ReportTask(organisation_id=ORG, report_recipe_id="early"), wall_clock()).task_id
    wall_clock.advance(1)
    second = queue.push(ReportTask(organisation_id=ORG, report_recipe_id="later"), wall_clock()).task_id
    popped = api.post("/schedulers/report/pop?limit=2").json()["results"]
    assert [task["id"] for task in popped] == [first, second]
