"""Siblings on the real Redis (the unit lane's tests again), and run once by a Celery runner: one message
for the three organisations, three completed records."""

from __future__ import annotations

import pytest
import redis
from celery import Celery

from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.runners import Lane, RunnerProcess
from tests.factories.tasks import boefje_task
from tests.factories.waiting import wait_for
from tests.unit.test_siblings import *  # noqa: F403  (the same tests, on the real Redis)
from tests.unit.test_siblings import HOST, ORGS

pytestmark = pytest.mark.integration


def test_a_celery_runner_runs_siblings_once_and_every_record_completes(
        real_redis: redis.Redis, key_prefix: str, rabbitmq_url: str, rabbit_app: Celery) -> None:
    app = rabbit_app
    lane = Lane(real_redis, key_prefix, boefje_slots=4)
    ids = [lane.boefjes.push(boefje_task(org=org, ooi=HOST), 1).task_id for org in ORGS]
    lane.boefjes.group(ids[0], ids)
    alone = lane.boefjes.push(boefje_task(org="org1"), 2).task_id
    runner = RunnerProcess(lane, rabbitmq_url, REDIS_URL, pool="threads", concurrency=4)
    try:
        runner.wait_ready(app)
        lane.dispatch_all(app, 2, 2, timeout=30)  # two runs: the three siblings, and the task alone
        wait_for(lambda: all(lane.status(task_id) == "completed" for task_id in [*ids, alone]), 10, "the records")
    finally:
        runner.kill()
    starts = [line["id"] for line in lane.lines() if line["event"] == "start"]
    assert len(starts) == 2 and alone in starts and len(set(starts) & set(ids)) == 1
