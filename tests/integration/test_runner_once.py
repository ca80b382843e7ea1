"""The reference runner runs a task once even when the broker delivers it twice."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis
from celery.contrib.testing.worker import start_worker

from kat_scheduler.config import load_settings
from kat_scheduler.runner.worker import create_runner_app
from tests.factories.redis_fixtures import REDIS_URL


def test_a_task_delivered_again_after_it_ran_is_skipped(real_redis: redis.Redis, key_prefix: str) -> None:
    ran: list[str] = []

    def handler(kind: str, payload: dict[str, Any]) -> None:
        ran.append(payload["id"])

    settings = load_settings(redis_url=REDIS_URL, key_prefix=key_prefix,
                             hand_offs={"boefje": {"celery_queue": f"{key_prefix}-b"}})
    boefjes = settings.hand_off("boefje")
    app = create_runner_app(settings, handler=handler, broker_url="memory://")
    app.conf.broker_transport_options = {"polling_interval": 0.005}
    task_id = str(uuid.uuid4())
    payload = {"id": task_id, "boefje": {"id": "dns"}, "input_ooi": "Hostname|internet|x", "organization": "o"}
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[boefjes.celery_queue]):
        for _ in range(2):  # the second delivery stands for the one after a lost acknowledgement
            app.send_task(boefjes.task_name, args=(payload,), task_id=task_id,
                          queue=boefjes.celery_queue)
        other = {**payload, "id": str(uuid.uuid4())}
        app.send_task(boefjes.task_name, args=(other,), task_id=other["id"], queue=boefjes.celery_queue)
        deadline = time.monotonic() + 10
        while other["id"] not in ran and time.monotonic() < deadline:  # tasks run in order on one solo worker
            time.sleep(0.01)
    assert ran == [task_id, other["id"]]
    assert real_redis.get("{" + f"{key_prefix}:runner" + "}:once:" + task_id) == "done"


def test_a_second_delivery_during_the_run_waits_and_is_skipped(real_redis: redis.Redis, key_prefix: str) -> None:
    ran: list[str] = []
    release = threading.Event()

    def handler(kind: str, payload: dict[str, Any]) -> None:
        ran.append(payload["id"])
        assert release.wait(10)

    settings = load_settings(redis_url=REDIS_URL, key_prefix=key_prefix,
                             hand_offs={"boefje": {"celery_queue": f"{key_prefix}-b"}})
    boefjes = settings.hand_off("boefje")
    app = create_runner_app(settings, handler=handler, broker_url="memory://")
    app.conf.broker_transport_options = {"polling_interval": 0.005}
    task_id = str(uuid.uuid4())
    payload = {"id": task_id, "boefje": {"id": "dns"}, "input_ooi": "Hostname|internet|x", "organization": "o"}
    key = "{" + f"{key_prefix}:runner" + "}:once:" + task_id
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      queues=[boefjes.celery_queue]):
        for _ in range(2):  # both at once: the second stands for a redelivery while the first still runs
            app.send_task(boefjes.task_name, args=(payload,), task_id=task_id,
                          queue=boefjes.celery_queue)
        deadline = time.monotonic() + 10
        while real_redis.get(key) != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        while real_redis.get(key) != "done" and time.monotonic() < deadline:
            time.sleep(0.01)
    assert ran == [task_id]
