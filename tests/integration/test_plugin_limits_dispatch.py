"""Plugin limits and organisation weights counted where they matter, at the runner: the reference runner
records every start and end; two dispatchers share the queue on the real Redis and hand tasks over
RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from kat_scheduler.queues.limits import PluginLimit
from kat_scheduler.runner.handlers import max_concurrency
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.runners import Lane, RunnerProcess
from tests.factories.tasks import boefje_task

pytestmark = pytest.mark.integration


@pytest.fixture
def app(rabbit_app: Celery) -> Celery:
    return rabbit_app


@pytest.fixture
def runner(real_redis: redis.Redis, key_prefix: str, rabbitmq_url: str, app: Celery,
           request: pytest.FixtureRequest) -> Iterator[tuple[Lane, RunnerProcess]]:
    concurrency, hold = request.param
    lane = Lane(real_redis, key_prefix, boefje_slots=concurrency)
    process = RunnerProcess(lane, rabbitmq_url, REDIS_URL, pool="threads", concurrency=concurrency,
                            hold_seconds=hold)
    try:
        yield lane, process.wait_ready(app)
    finally:
        process.kill()


@pytest.mark.parametrize("runner", [(6, 0.15)], indirect=True)
def test_a_concurrency_of_one_holds_over_three_organisations_and_two_dispatchers_while_others_flow(
        runner: tuple[Lane, RunnerProcess], app: Celery) -> None:
    lane, _ = runner
    shodan = {lane.boefjes.push(boefje_task(org=f"org{n % 3}", boefje="shodan"), n).task_id for n in range(9)}
    others = {lane.boefjes.push(boefje_task(org=f"org{n % 3}", boefje="dns-records"), n).task_id
              for n in range(18)}
    lane.boefjes.set_limit("shodan", PluginLimit(concurrency=1))
    lane.dispatch_all(app, 2, len(shodan) + len(others), timeout=60)
    lines = lane.lines()
    assert max_concurrency([line for line in lines if line["id"] in shodan]) == 1
    assert max_concurrency([line for line in lines if line["id"] in others]) > 1  # the others ran side by side
    starts = [line["id"] for line in lines if line["event"] == "start"]
    # the others did not wait for the shodan tasks: they were all started before the last shodan one was
    assert max(starts.index(task_id) for task_id in others) < max(starts.index(task_id) for task_id in shodan)
    assert {line["organisation"] for line in lines if line["id"] in shodan} == {"org0", "org1", "org2"}


RATE_SECONDS = 60  # a minute of saturation


@pytest.mark.parametrize("runner", [(8, 0.0)], indirect=True)
def test_a_rate_of_five_a_second_is_never_exceeded_at_the_runner_over_a_minute(
        runner: tuple[Lane, RunnerProcess], app: Celery) -> None:
    lane, _ = runner
    # The limit counts starts as the runner reports them (Celery's task-started). The reference runner's
    # first tasks then wait a while for their first Redis connection (the run-once mark) before the
    # handler records its start: warm it up, so that the handler's starts are the runner's.
    warm_up = [lane.boefjes.push(boefje_task(boefje="dns-records"), n).task_id for n in range(8)]
    lane.dispatch_all(app, 1, len(warm_up), timeout=30)
    count = 5 * RATE_SECONDS
    limited = {lane.boefjes.push(boefje_task(org=f"org{n % 3}", boefje="shodan"), n).task_id for n in range(count)}
    lane.boefjes.set_limit("shodan", PluginLimit(rate="5/s"))
    lane.dispatch_all(app, 2, len(warm_up) + len(limited), timeout=RATE_SECONDS * 2)
    at = sorted(line["at"] for line in lane.lines() if line["event"] == "start" and line["id"] in limited)
    most_in_a_second = max(sum(1 for later in at[n:n + 10] if later - moment < 1.0) for n, moment in enumerate(at))
    assert most_in_a_second <= 5
    assert at[-1] - at[0] < RATE_SECONDS * 1.05 + 2  # and it does go at about the rate, not at a crawl


@pytest.mark.parametrize("runner", [(2, 0.0)], indirect=True)
def test_weights_of_three_to_one_give_three_starts_to_one_at_the_runner(runner: tuple[Lane, RunnerProcess],
                                                                         app: Celery) -> None:
    lane, _ = runner
    lane.boefjes.set_weights({"org-big": 3})
    for org in ("org-big", "org-small"):
        lane.boefjes.push_many([(boefje_task(org=org), 1) for _ in range(60)])
    lane.dispatch_all(app, 2, 120, timeout=60)
    first = [line["organisation"] for line in lane.lines() if line["event"] == "start"][:80]
    # two slots and two dispatchers: starts come in the serving order, give or take the two in flight
    assert abs(first.count("org-big") - 60) <= 2 and abs(first.count("org-small") - 20) <= 2
