"""The dashboard (server/dashboard/): its figures against the queue, its explanations, its actions, its
token, a task's history, the runners it shows and the samples behind its charts. On fakeredis here,
on the real Redis in tests/integration/test_dashboard_redis.py; the browser test is
tests/integration/test_dashboard_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient

from kat_scheduler.beat import KatScheduler
from kat_scheduler.context.context import AppContext
from kat_scheduler.dispatcher.lifecycle import Lifecycle
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.queues.limits import PluginLimit
from kat_scheduler.rankers import BoefjeRanker, RankingContext
from kat_scheduler.repositories.queue_samples import QueueSamples
from kat_scheduler.repositories.runner_presence import CELERY, PULL, RunnerPresence
from kat_scheduler.repositories.task_records import RECORD_FIELDS, SEP
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from tests.factories.tasks import FakeClock, boefje_task
from tests.unit.test_api import make_context

TOKEN = "dashboard-test-token"
DAY_MS = 86_400_000


@pytest.fixture
def context(client: redis.Redis, key_prefix: str, clock: FakeClock) -> AppContext:
    return make_context(client, key_prefix, clock, max_attempts=2)


@pytest.fixture
def boefjes(context: AppContext) -> PriorityQueue:
    return context.queues["boefje"]


def api_of(context: AppContext, token: str | None = None) -> TestClient:
    return TestClient(create_app(context, ApiSettings(api_token=token, reap_interval_seconds=0)))


@pytest.fixture
def api(context: AppContext) -> Iterator[TestClient]:
    with api_of(context) as client:
        yield client


def dead_letter(queue: PriorityQueue, clock: FakeClock, org: str = "org3") -> str:
    """A task whose leases ran out until it was dead-lettered."""
    queue.push(boefje_task(org=org, boefje="crashes-its-runner"), clock() + 1)
    while True:
        [claimed] = queue.claim(1, ["crashes-its-runner"], lease_seconds=1)
        clock.advance(2)
        if queue.reap().dead_lettered:
            return claimed.id


def figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="([^"]+)">([^<]*)<', html))


# -- a task's history ---------------------------------------------------------------------------------


def test_a_tasks_history_names_each_status_with_why_or_by_whom(boefjes: PriorityQueue, clock: FakeClock) -> None:
    task = boefje_task()
    boefjes.push(task, clock())
    for step in range(2):
        clock.advance(1)
        [claimed] = boefjes.claim(1, lease_seconds=5)
        clock.advance(1)
        boefjes.mark_running(claimed.id, runner=f"worker-{step}@host")
        boefjes.mark_running(claimed.id, runner=f"worker-{step}@host")  # a runner that says it still runs
        clock.advance(1)
        if step == 0:
            boefjes.release(claimed.id)
    clock.advance(10)
    assert boefjes.reap().requeued == [task.id]
    [claimed] = boefjes.dispatch(1, slots=1)
    boefjes.ack(claimed.id)
    record = boefjes.records.get(task.id)
    assert record is not None
    assert [(change.status, change.note) for change in record.history()] == [
        ("queued", "pushed"), ("dispatched", "pulled"), ("running", "worker-0@host"), ("queued", "handed back"),
        ("dispatched", "pulled"), ("running", "worker-1@host"), ("queued", "lease expired"),
        ("dispatched", "forwarded"), ("completed", "")]
    times = [change.at_ms for change in record.history()]
    assert times == sorted(times) and times[-1] == clock()
    assert record.runner == "forwarded"


def test_a_history_keeps_its_newest_entries_and_notes_cannot_break_it(boefjes: PriorityQueue,
                                                                      clock: FakeClock) -> None:
    task = boefje_task()
    boefjes.push(task, clock())
    for n in range(60):
        clock.advance(1)
        [claimed] = boefjes.claim(1)
        boefjes.mark_running(claimed.id, runner=f"runner;{n},\x1fsneaky")
        boefjes.release(claimed.id)
    record = boefjes.records.get(task.id)
    assert record is not None and record.status.value == "queued"
    history = record.history()
    assert 10 < len(history) < 120  # 120 changes made; bounded: the oldest went
    assert history[0].note == "pushed" and history[1].at_ms > history[0].at_ms + 1000  # its push is always shown
    assert history[-2] == type(history[-2])(clock(), "running", "runner 59  sneaky")
    assert history[-1].status == "queued" and history[-1].at_ms == clock()


def test_a_record_written_before_histories_existed_is_read_and_moved_on(boefjes: PriorityQueue,
                                                                        clock: FakeClock) -> None:
    task = boefje_task()
    boefjes.push(task, clock())
    key = boefjes.records.record_key(task.id)
    fields = boefjes.client.get(key).split(SEP)
    del fields[RECORD_FIELDS.index("history")]
    boefjes.client.set(key, SEP.join(fields))
    assert boefjes.records.get(task.id).data == {"id": task.id, **task.model_dump(mode="json", exclude={"id"},
                                                                                    exclude_none=True)}
    [claimed] = boefjes.claim(1)
    assert claimed.id == task.id and [c.status for c in claimed.history()] == ["queued", "dispatched"]


# -- the figures --------------------------------------------------------------------------------------


def seed(context: AppContext, clock: FakeClock) -> dict[str, Any]:
    """Three organisations with work; a claimed and a running task; a manual run; a rescan; a limited
    plugin with no room; a dead letter."""
    queue = context.queues["boefje"]
    ranker = BoefjeRanker()
    now = clock()
    for n in range(9):
        queue.push(boefje_task(org=f"org{n % 3}", boefje="nmap"), ranker.rank(RankingContext(now)))
    [dispatched, running] = queue.claim(2)
    queue.mark_running(running.id, runner="worker@host")
    rescan = boefje_task(org="org0", boefje="dns-records")
    last_run = now - DAY_MS - 6 * 3_600_000  # a daily boefje, six hours overdue
    queue.records.client.hset(f"{queue.base}:lastrun", rescan.hash, last_run)
    queue.push(rescan, ranker.rank(RankingContext(now, last_run_ms=last_run, interval_seconds=86_400)))
    manual = boefje_task(org="org1", boefje="dns-records")
    queue.push(manual, ranker.rank(RankingContext(now, manual=True)))
    queue.set_limit("leakix", PluginLimit(concurrency=1))
    queue.push(boefje_task(org="org2", boefje="leakix"), ranker.rank(RankingContext(now)))
    queue.push(boefje_task(org="org2", boefje="leakix"), ranker.rank(RankingContext(now)))
    queue.claim(1, ["leakix"])
    dead = dead_letter(queue, clock)
    return {"dispatched": dispatched, "running": running, "rescan": rescan, "manual": manual, "dead": dead}


def test_the_data_match_the_queue_per_kind_and_organisation(api: TestClient, context: AppContext,
                                                            clock: FakeClock) -> None:
    seeded = seed(context, clock)
    queue = context.queues["boefje"]
    data = api.get("/dashboard/data").json()
    boefje = data["kinds"]["boefje"]
    assert boefje["queued"] == queue.size() == 10
    assert (boefje["dispatched"], boefje["running"], boefje["in_flight"]) == (2, 1, 3)
    assert boefje["dead_letters"] == 1 and boefje["dead"][0]["id"] == seeded["dead"]
    assert boefje["dead"][0]["reason"] == "lease expired 2 times"
    by_org = {o["organisation"]: o for o in boefje["organisations"]}
    assert {org: o["queued"] for org, o in by_org.items()} == queue.counts()
    assert by_org[seeded["running"].organisation]["running"] == 1
    assert [o["organisation"] for o in boefje["organisations"]][:3] == queue.serving_order(0, 3)
    assert [head["organisation"] for head in boefje["head"]] == queue.serving_order(0, 10)
    tasks = {t["id"]: t for head in boefje["head"] for t in head["tasks"]}
    assert tasks[seeded["manual"].id]["why"].startswith("manual run")
    assert boefje["head"][0]["tasks"][0]["id"] == seeded["manual"].id  # org1's turn is first: a manual head
    assert tasks[seeded["rescan"].id]["why"].startswith("rescan, overdue by 6h00m")
    held = [t for t in tasks.values() if t["held_by_limit"]]
    assert [t["plugin"] for t in held] == ["leakix"] and "held by its plugin's limit" in held[0]["why"]
    assert boefje["limits"] == [{"plugin": "leakix", "concurrency": 1, "rate": None, "in_flight": 1, "room": 0,
                                 "held": 1}]
    assert data["kinds"]["normalizer"]["queued"] == 0


def test_the_head_of_each_queue_is_in_serving_order_with_each_score_explained(api: TestClient,
                                                                            context: AppContext,
                                                                            clock: FakeClock) -> None:
    seeded = seed(context, clock)
    queue = context.queues["boefje"]
    head = api.get("/dashboard/data").json()["kinds"]["boefje"]["head"]
    assert [h["organisation"] for h in head] == queue.serving_order(0, 10)
    for shown in head:
        expected = [record.id for record in queue.list_queued(shown["organisation"], 0, 5)]
        assert [task["id"] for task in shown["tasks"]] == expected
    why = {task["id"]: task["why"] for shown in head for task in shown["tasks"]}
    assert why[seeded["manual"].id].startswith("manual run")
    assert why[seeded["rescan"].id].startswith("rescan, overdue by 6h00m")
    held = [task for shown in head for task in shown["tasks"] if task["plugin"] == "leakix"]
    assert len(held) == 1 and held[0]["held_by_limit"] and held[0]["why"].endswith("held by its plugin's limit")
    assert all(task["why"].startswith("first scan") for shown in head for task in shown["tasks"]
               if task["plugin"] == "nmap")


def test_the_page_shows_the_same_figures(api: TestClient, context: AppContext, clock: FakeClock) -> None:
    seed(context, clock)
    queue = context.queues["boefje"]
    page = api.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    shown = figures(page.text)
    assert shown["boefje/queued"] == str(queue.size())
    assert shown["boefje/dead_letters"] == "1"
    for org, count in queue.counts().items():
        assert shown[f"boefje/{org}/queued"] == str(count)
    assert figures(api.get("/dashboard/live").text) == shown


def test_a_dead_letter_is_requeued_or_dropped_from_the_dashboard(api: TestClient, context: AppContext,
                                                                 clock: FakeClock) -> None:
    queue = context.queues["boefje"]
    first, second = dead_letter(queue, clock, "org1"), dead_letter(queue, clock, "org2")
    action = "/dashboard/dead-letters/boefje/{}/{}"
    assert api.post(action.format(first, "requeue")).status_code == 400  # not from the dashboard's page
    headers = {"X-Dashboard-Action": "1"}
    assert api.post(action.format(first, "requeue"), headers=headers).json()["outcome"] == "requeued"
    assert queue.records.get(first).status.value == "queued" and not queue.is_dead(first)
    assert api.post(action.format(first, "requeue"), headers=headers).status_code == 404  # no longer dead
    assert api.post(action.format(second, "drop"), headers=headers).json()["outcome"] == "dropped"
    assert not queue.is_dead(second) and queue.dead_count() == 0
    assert api.post(action.format(second, "explode"), headers=headers).status_code == 404
    assert api.post("/dashboard/dead-letters/nonsense/x/drop", headers=headers).status_code == 404


def test_a_tasks_page_shows_its_record_history_and_runner(api: TestClient, context: AppContext,
                                                          clock: FakeClock) -> None:
    seeded = seed(context, clock)
    page = api.get(f"/dashboard/tasks/{seeded['running'].id}")
    assert page.status_code == 200
    shown = figures(page.text)
    assert shown["task/status"] == "running" and shown["task/runner"] == "worker@host"
    assert re.findall(r'data-figure="task/history/status">(\w+)<', page.text) == ["queued", "dispatched", "running"]
    assert api.get("/dashboard/tasks/no-such-task").status_code == 404


# -- the token ----------------------------------------------------------------------------------------


def test_with_a_token_the_dashboard_asks_for_it_and_its_cookie_opens_only_the_dashboard(
        context: AppContext, clock: FakeClock) -> None:
    seed(context, clock)
    with api_of(context, TOKEN) as api:
        page = api.get("/dashboard")
        assert page.status_code == 401 and 'name="token"' in page.text and "boefje/queued" not in page.text
        assert api.get("/dashboard/data").status_code == 401
        assert api.get("/dashboard/live").status_code == 401
        assert api.post("/dashboard/login", data={"token": "wrong"}, follow_redirects=False).status_code == 401
        signed_in = api.post("/dashboard/login", data={"token": TOKEN}, follow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard"
        cookie = signed_in.headers["set-cookie"]
        assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert api.get("/dashboard").status_code == 200  # the client keeps the cookie
        assert api.get("/dashboard/data").json()["kinds"]["boefje"]["queued"] == 10
        assert api.get("/schedulers").status_code == 401  # the cookie opens only the dashboard
    with api_of(context, TOKEN) as api:
        assert api.get("/dashboard/data", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


# -- runners and samples ------------------------------------------------------------------------------


def test_runners_are_shown_from_heartbeats_and_pops(api: TestClient, context: AppContext, clock: FakeClock) -> None:
    presence = RunnerPresence(context.redis, context.settings.key_prefix, context.clock_ms)
    lifecycle = Lifecycle(context.queues, [], on_heartbeat=lambda *seen: presence.seen(seen[0], CELERY, *seen[1:]))
    lifecycle.on_event({"type": "worker-heartbeat", "hostname": "celery@runner-1", "freq": 2, "pid": 7,
                        "active": 3, "processed": 41})
    api.post("/schedulers/boefje/pop")
    runners = {r["name"]: r for r in api.get("/dashboard/data").json()["runners"]}
    assert runners["celery@runner-1"]["how"] == CELERY
    assert (runners["celery@runner-1"]["active"], runners["celery@runner-1"]["processed"]) == (3, 41)
    assert runners["pull runner at testclient"]["how"] == PULL


def test_runners_not_seen_for_ten_minutes_are_forgotten(context: AppContext, clock: FakeClock) -> None:
    presence = RunnerPresence(context.redis, context.settings.key_prefix, context.clock_ms)
    presence.seen("old", CELERY)
    clock.advance(300)
    presence.seen("new", PULL)
    clock.advance(301)
    assert presence.client.hlen(presence.key) == 2  # forgotten as it is read
    assert [r.name for r in presence.recent()] == ["new"]
    assert presence.client.hlen(presence.key) == 1


def test_the_beat_leader_samples_the_queues_for_the_charts(context: AppContext, clock: FakeClock) -> None:
    queue = context.queues["boefje"]
    for n in range(4):
        queue.push(boefje_task(org=f"org{n}"), clock())
    beat = KatScheduler(Celery("dashboard-test", broker="memory://", set_as_current=False), context=context)
    try:
        beat.sample_queues()
        [claimed] = queue.claim(1)
        queue.ack(claimed.id)
        beat.sample_queues()  # within SAMPLE_EVERY_SECONDS: no second sample
        samples = QueueSamples(context.redis, context.settings.key_prefix, "boefje").last_hour(clock())
        assert [(s.queued, s.in_flight, s.ended) for s in samples] == [(4, 0, 0)]
        beat._next_sample = 0
        clock.advance(10)
        beat.sample_queues()
        series = api_of(context).get("/dashboard/data").json()["kinds"]["boefje"]["series"]
        assert [(p["queued"], p["ended_per_minute"]) for p in series] == [(4, None), (3, 6.0)]
    finally:
        beat.close()
