"""Log lines as an operator's collector sees them: JSON when SCHEDULER_LOGGING_FORMAT=json, one format per
process, on stderr, and every line about a task with its task_id, kind and organisation as fields."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from kat_scheduler.logging_setup import JsonFormatter
from tests.factories.api_server import free_port
from tests.factories.redis_fixtures import REDIS_URL, delete_prefixed
from tests.factories.runners import Lane, RunnerProcess, running
from tests.factories.tasks import boefje_task
from tests.factories.waiting import wait_for

pytestmark = pytest.mark.integration


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as JSON; a line that is not JSON fails the test."""
    lines = []
    for line in text.splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}") from None
    return lines


def test_a_dispatched_task_is_logged_with_its_fields_by_the_dispatcher_and_the_runner(
        real_redis: redis.Redis, key_prefix: str, rabbitmq_url: str, caplog: pytest.LogCaptureFixture) -> None:
    app = Celery(f"kat-test-{uuid.uuid4().hex[:6]}", broker=rabbitmq_url)
    app.config_from_object("kat_scheduler.celery_defaults")
    lane = Lane(real_redis, key_prefix)
    task = boefje_task(org="org-logged")
    lane.boefjes.push(task, 1)
    runner = RunnerProcess(lane, rabbitmq_url, REDIS_URL, log_level="INFO",
                           env={"SCHEDULER_LOGGING_FORMAT": "json"}).wait_ready(app)
    try:
        with caplog.at_level(logging.INFO, logger="kat_scheduler.dispatcher"), running(lane.dispatcher(app)):
            wait_for(lambda: lane.status(task.id) == "completed", 20, "the task to complete")
    finally:
        runner.stop()
        app.close()
    completed = [r for r in caplog.records if "completed on" in r.getMessage()]
    assert completed, [r.getMessage() for r in caplog.records]
    line = json.loads(JsonFormatter().format(completed[0]))
    assert (line["task_id"], line["kind"], line["organisation"]) == (task.id, "boefje", "org-logged")

    assert runner.process.stderr is not None
    runner_lines = json_lines(runner.process.stderr.read().decode())  # the runner honours the format too
    started = [line for line in runner_lines if "starting on" in line["message"]]
    assert started and started[0]["task_id"] == task.id and started[0]["organisation"] == "org-logged"


def test_the_api_writes_json_lines_only_and_only_to_stderr_uvicorns_own_included(tmp_path: Path) -> None:
    prefix = f"logs-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {"SCHEDULER_REDIS_URL": REDIS_URL, "SCHEDULER_KEY_PREFIX": prefix, "SCHEDULER_API_TOKEN": "",
           "SCHEDULER_LOGGING_FORMAT": "json", "SCHEDULER_API_ACCESS_LOG": "true"}
    process = subprocess.Popen([sys.executable, "-m", "kat_scheduler.cli", "api", "--host", "127.0.0.1",
                                "--port", str(port)], env={**os.environ, **env},
                               stdout=open(tmp_path / "out", "wb"), stderr=open(tmp_path / "err", "wb"))  # noqa: SIM115

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success
        except httpx.TransportError:
            return process.poll() is not None
    try:
        wait_for(answers, 30, "the API to start")
        wait_for(lambda: "GET /health" in (tmp_path / "err").read_text(), 10, "the access line")
    finally:
        process.terminate()
        process.wait(timeout=10)
        delete_prefixed(redis.Redis.from_url(REDIS_URL, decode_responses=True), prefix)
    assert (tmp_path / "out").read_text() == ""
    lines = json_lines((tmp_path / "err").read_text())
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers, loggers
