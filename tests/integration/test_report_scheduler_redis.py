"""Reports on the real Redis (the unit lane's tests again), and handed to a Celery runner on RabbitMQ."""

from __future__ import annotations

import pytest
import redis
from celery import Celery

from kat_scheduler.kinds.report import ReportTask
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.runners import Lane, RunnerProcess, running
from tests.factories.waiting import wait_for
from tests.unit.test_report_scheduler import *  # noqa: F403  (the same tests, on the real Redis)

pytestmark = pytest.mark.integration


def test_a_celery_runner_receives_report_tasks_as_handle_report_one_slot_at_a_time(
        real_redis: redis.Redis, key_prefix: str, rabbitmq_url: str, rabbit_app: Celery) -> None:
    lane = Lane(real_redis, key_prefix)
    assert lane.settings.hand_off("report").task_name == "tasks.handle_report"
    reports = lane.queues["report"]
    pushed = [reports.push(ReportTask(organisation_id=f"org{n % 2}", report_recipe_id=f"recipe-{n}"), n).task_id
              for n in range(4)]
    runner = RunnerProcess(lane, rabbitmq_url, REDIS_URL, pool="threads", concurrency=4, hold_seconds=0.2)
    try:
        runner.wait_ready(rabbit_app)
        with running(lane.dispatcher(rabbit_app)):
            wait_for(lambda: lane.ended() == len(pushed), 30, "the report tasks to run")
            wait_for(lambda: all(str(reports.records.get(task_id).status) == "completed"  # type: ignore[union-attr]
                                 for task_id in pushed), 10, "their completion")
    finally:
        runner.kill()
    starts = lane.starts()
    assert [line["id"] for line in starts] == pushed and {line["kind"] for line in starts} == {"report"}
    lines = lane.lines()
    in_flight = max(sum(1 if line["event"] == "start" else -1 for line in lines[:n + 1]) for n in range(len(lines)))
    assert in_flight == 1  # SCHEDULER_REPORT_SLOTS is 1 in the lane: one report at a time, four runner threads
