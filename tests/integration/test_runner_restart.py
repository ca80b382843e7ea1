"""A runner is a process, not a name: a runner killed mid-task (SIGKILL of its process group) and
started again at once under the same `-n` name, as a container with a restart policy does, must not
keep the lost task's lease alive with its heartbeats. The task runs again within the lost-runner
grace and completes once, on both Celery brokers: RabbitMQ redelivers the message itself, Redis (an
hour's visibility timeout) does not, so there the task comes back through its queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from tests.factories.rabbitmq_fixtures import celery_app
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.runners import Lane, RunnerProcess, running
from tests.factories.tasks import boefje_task
from tests.factories.waiting import wait_for

pytestmark = pytest.mark.integration

GRACE_SECONDS = 3.0
LEASE_SECONDS = 60.0  # far longer than the test: only the lost-runner rule can bring the task back


@pytest.fixture(params=["rabbitmq", "redis"])
def broker_url(request: pytest.FixtureRequest, rabbitmq_url: str) -> str:
    return rabbitmq_url if request.param == "rabbitmq" else REDIS_URL


@pytest.fixture
def app(broker_url: str) -> Iterator[Celery]:
    celery = celery_app(broker_url)
    yield celery
    celery.close()


@pytest.fixture
def runners() -> Iterator[list[RunnerProcess]]:
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        runner.kill()


@pytest.mark.parametrize("restart", ["at once", "within a heartbeat"])
def test_a_runner_restarted_under_its_name_runs_the_lost_task_again_once(
        real_redis: redis.Redis, key_prefix: str, app: Celery, broker_url: str, runners: list[RunnerProcess],
        restart: str) -> None:
    lane = Lane(real_redis, key_prefix, lease_seconds=LEASE_SECONDS)
    task_id = lane.boefjes.push(boefje_task(), 1).task_id
    hostname = f"runner-{uuid.uuid4().hex[:8]}@restarting"

    def start(hold_seconds: float) -> RunnerProcess:
        runner = RunnerProcess(lane, broker_url, REDIS_URL, pool="threads", hold_seconds=hold_seconds,
                               hostname=hostname)
        runners.append(runner)
        return runner

    first = start(hold_seconds=120).wait_ready(app)
    options = {"lost_runner_grace": GRACE_SECONDS, "reap_seconds": 0.5, "upkeep_tick": 0.2,
               "reconcile_seconds": 1.0}
    with running(lane.dispatcher(app, **options)) as dispatcher:
        wait_for(lambda: lane.starts(), 20, "the task to start on the first process")
        wait_for(lambda: dispatcher.lifecycle.alive(hostname), 10, "the first process's heartbeat")
        first.kill()
        second = start(hold_seconds=0.0)
        if restart == "at once":
            second.wait_ready(app)
        # "within a heartbeat": nothing waits; the new process comes up while the old one's last
        # heartbeat still counts (two intervals of 2 s).
        wait_for(lambda: lane.status(task_id) == "completed", 45,
                 "the lost task to run again and complete on the new process")
    starts = [line["id"] for line in lane.starts()]
    ends = [line["id"] for line in lane.lines() if line["event"] == "end"]
    assert starts.count(task_id) == 2  # once on the killed process, once on its successor
    assert ends.count(task_id) == 1  # and it completed once
    record = lane.boefjes.records.get(task_id)
    assert record is not None and lane.boefjes.slots_in_use() == 0
