"""Dispatch on the real services: queues on Redis, Celery on RabbitMQ (and on Redis where said), and
reference runners as subprocesses (`celery -A kat_scheduler.runner worker`) that record their starts."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from amqp.exceptions import NotFound
from celery import Celery

from kat_scheduler.runner.handlers import max_concurrency
from tests.factories.rabbitmq_fixtures import celery_app
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.runners import CELERY, ROOT, Lane, RunnerProcess, running
from tests.factories.tasks import boefje_task
from tests.factories.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_url(rabbitmq_url: str) -> str:
    return rabbitmq_url


@pytest.fixture
def app(broker_url: str) -> Iterator[Celery]:
    celery = celery_app(broker_url)
    yield celery
    celery.close()


@pytest.fixture
def runners(real_redis: redis.Redis, broker_url: str) -> Iterator[list[RunnerProcess]]:
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        runner.kill()


def start_runner(lane: Lane, app: Celery, runners: list[RunnerProcess], broker_url: str,
                 **options: object) -> RunnerProcess:
    runner = RunnerProcess(lane, broker_url, REDIS_URL, **options)  # type: ignore[arg-type]
    runners.append(runner)
    return runner.wait_ready(app)


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_a_one_slot_runner_receives_tasks_exactly_in_score_order(
        real_redis: redis.Redis, key_prefix: str, rabbitmq_url: str, runners: list[RunnerProcess],
        broker: str) -> None:
    broker_url = rabbitmq_url if broker == "rabbitmq" else REDIS_URL
    app = celery_app(broker_url)
    lane = Lane(real_redis, key_prefix)
    scores = list(range(15))
    random.Random(7).shuffle(scores)
    pushed = {lane.boefjes.push(boefje_task(), score).task_id: score for score in scores}
    start_runner(lane, app, runners, broker_url)
    with running(lane.dispatcher(app)):
        wait_for(lambda: lane.ended() == len(scores), 20, "all tasks to run")
        wait_for(lambda: all(lane.status(task_id) == "completed" for task_id in pushed), 5, "completion")
    assert [pushed[line["id"]] for line in lane.starts()] == sorted(scores)
    assert lane.boefjes.slots_in_use() == 0
    app.close()


def test_a_manual_task_overtakes_five_thousand_queued_ones(real_redis: redis.Redis, key_prefix: str,
                                                          app: Celery, broker_url: str,
                                                          runners: list[RunnerProcess]) -> None:
    lane = Lane(real_redis, key_prefix)
    lane.boefjes.push_many([(boefje_task(org=f"org{n % 5}"), 100) for n in range(5000)])
    start_runner(lane, app, runners, broker_url, hold_seconds=0.02)
    with running(lane.dispatcher(app)):
        wait_for(lambda: len(lane.starts()) >= 3, 10, "the backlog to start moving")
        started_before = len(lane.starts())
        manual = lane.boefjes.push(boefje_task(org="org9"), -1).task_id
        wait_for(lambda: lane.status(manual) == "completed", 10, "the manual task")
    order = [line["id"] for line in lane.starts()]
    assert order.index(manual) <= started_before  # only the task already in flight went first


def test_organisations_take_turns_at_the_runner(real_redis: redis.Redis, key_prefix: str, app: Celery,
                                                broker_url: str, runners: list[RunnerProcess]) -> None:
    lane = Lane(real_redis, key_prefix)
    lane.boefjes.push_many([(boefje_task(org="big"), 1) for _ in range(200)])
    lane.boefjes.push_many([(boefje_task(org="small"), 90) for _ in range(3)])
    start_runner(lane, app, runners, broker_url)
    with running(lane.dispatcher(app)):
        wait_for(lambda: len(lane.starts()) >= 6, 10, "six starts")
    assert [line["organisation"] for line in lane.starts()[:6]].count("small") == 3


def test_a_runner_killed_mid_task_loses_nothing(real_redis: redis.Redis, key_prefix: str, app: Celery,
                                               broker_url: str, runners: list[RunnerProcess]) -> None:
    lane = Lane(real_redis, key_prefix, lease_seconds=3)
    ids = [lane.boefjes.push(boefje_task(), score).task_id for score in (1, 2, 3)]
    # threads, not solo: a solo worker's event loop is blocked while its task runs, so its task-started
    # event (and heartbeats) would only leave after the task (docs/dispatch.md)
    doomed = start_runner(lane, app, runners, broker_url, pool="threads", hold_seconds=30)
    with running(lane.dispatcher(app, reap_seconds=0.5, lost_runner_grace=2, upkeep_tick=0.2)):
        wait_for(lambda: lane.starts(), 10, "the first start")
        wait_for(lambda: lane.status(ids[0]) == "running", 5, "the first task to run")
        doomed.kill()
        start_runner(lane, app, runners, broker_url, hold_seconds=0.0)
        wait_for(lambda: all(lane.status(task_id) == "completed" for task_id in ids), 30, "every task")
    started = [line["id"] for line in lane.starts()]
    assert started.count(ids[0]) == 2  # it ran again after the kill
    assert set(started) == set(ids)


def test_a_dispatcher_killed_after_a_claim_gets_its_task_back_after_the_lease(
        real_redis: redis.Redis, key_prefix: str, app: Celery, broker_url: str,
        runners: list[RunnerProcess]) -> None:
    lane = Lane(real_redis, key_prefix, lease_seconds=1.5)
    task_id = lane.boefjes.push(boefje_task(), 1).task_id
    env = dict(os.environ, CELERY_BROKER_URL=broker_url, SCHEDULER_REDIS_URL=REDIS_URL,
               SCHEDULER_KEY_PREFIX=key_prefix, SCHEDULER_BOEFJE_CELERY_QUEUE=lane.boefje_queue,
               SCHEDULER_NORMALIZER_CELERY_QUEUE=lane.normalizer_queue, SCHEDULER_BOEFJE_SLOTS="1",
               SCHEDULER_LEASE_SECONDS="1.5", SCHEDULER_LISTENERS_ENABLED="false", PYTHONPATH=str(ROOT))
    # The scheduler worker claims and sends the task; nobody consumes its Celery queue yet.
    scheduler = subprocess.Popen([CELERY, "-A", "kat_scheduler", "worker", "-P", "solo", "-Q",
                                  f"{key_prefix}-scheduler", "-n", f"sched-{key_prefix}@localhost",
                                  "--loglevel", "WARNING"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: lane.status(task_id) == "dispatched", 20, "the scheduler worker's claim")
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait(10)
    finally:
        if scheduler.poll() is None:
            os.killpg(scheduler.pid, signal.SIGKILL)
    # Its message, if it got as far as sending one, is dropped: as if it died between the claim and
    # the send. Killed sooner, it never declared the queue, and there is nothing to drop.
    with app.connection_for_write() as connection, contextlib.suppress(NotFound):
        connection.default_channel.queue_purge(lane.boefje_queue)
    start_runner(lane, app, runners, broker_url)
    with running(lane.dispatcher(app, reap_seconds=0.3, upkeep_tick=0.1)):
        wait_for(lambda: lane.status(task_id) == "completed", 15, "the task to come back and run")
    record = lane.boefjes.records.get(task_id)
    assert record is not None and record.attempts == 2


def test_three_dispatchers_never_exceed_the_slots(real_redis: redis.Redis, key_prefix: str, app: Celery,
                                                  broker_url: str, runners: list[RunnerProcess]) -> None:
    lane = Lane(real_redis, key_prefix, boefje_slots=3)
    ids = [task.task_id for task in lane.boefjes.push_many([(boefje_task(), n) for n in range(40)])]
    start_runner(lane, app, runners, broker_url, pool="threads", concurrency=8, hold_seconds=0.05)
    dispatchers = lane.dispatch_all(app, 3, len(ids), timeout=30)
    assert max_concurrency(lane.lines()) == 3
    assert sum(dispatcher.sent for dispatcher in dispatchers) == len(ids)


def test_discovered_slots_follow_the_runners_pool_and_an_idle_dispatcher_does_not_poll(
        real_redis: redis.Redis, key_prefix: str, app: Celery, broker_url: str,
        runners: list[RunnerProcess]) -> None:
    lane = Lane(real_redis, key_prefix, boefje_slots=0)
    start_runner(lane, app, runners, broker_url, pool="threads", concurrency=3, hold_seconds=0.1)
    with running(lane.dispatcher(app)) as dispatcher:
        wait_for(lambda: dispatcher.slots(dispatcher.routes[0]) == 3, 10, "three discovered slots")
        cpu, wall = time.process_time(), time.monotonic()
        time.sleep(3)  # measuring idleness: nothing to wait for
        idle_share = (time.process_time() - cpu) / (time.monotonic() - wall)
        ids = [result.task_id for result in lane.boefjes.push_many([(boefje_task(), 1) for _ in range(15)])]
        wait_for(lambda: lane.ended() == len(ids), 20, "all tasks to run")
    assert idle_share < 0.02
    assert max_concurrency(lane.lines()) == 3
