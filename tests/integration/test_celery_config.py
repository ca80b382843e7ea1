"""An operator's `celeryconfig.py` is read by every documented command, started as an operator starts it:
the `celery` console script, from the folder that holds the file."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from tests.factories.rabbitmq_fixtures import RABBITMQ_URL
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.runners import CELERY, ROOT
from tests.factories.waiting import wait_for


def banner_of(app: str, folder: Path, extra_env: dict[str, str]) -> list[str]:
    """Start `celery -A app worker` in `folder` and give back its output up to the banner's concurrency line."""
    inherited = {name: value for name, value in os.environ.items() if name != "CELERY_CONFIG_MODULE"}
    env = {**inherited, "PYTHONPATH": str(ROOT), "SCHEDULER_REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": REDIS_URL,
           "QUEUE_URI": RABBITMQ_URL, "SCHEDULER_KEY_PREFIX": f"cfg-{uuid.uuid4().hex[:8]}", **extra_env}
    process = subprocess.Popen([CELERY, "-A", app, "worker", "--loglevel=INFO", "-n", f"cfg-{uuid.uuid4().hex[:6]}@%h"],
                               cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("concurrency:" in line for line in lines) or process.poll() is not None, timeout=60,
                 what=f"the banner of {app}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=10)
    return lines


@pytest.mark.parametrize("app", ["kat_scheduler", "kat_scheduler.runner"])
def test_the_celeryconfig_in_the_working_folder_is_read(app: str, tmp_path: Path) -> None:
    (tmp_path / "celeryconfig.py").write_text("worker_concurrency = 3\n")
    lines = banner_of(app, tmp_path, {"SCHEDULER_DISPATCHER_ENABLED": "false"})
    concurrency = [line for line in lines if "concurrency:" in line]
    assert concurrency and "concurrency: 3 " in concurrency[0], "".join(lines[-30:])


def test_celery_config_module_names_another_module(tmp_path: Path) -> None:
    (tmp_path / "site_celery.py").write_text("worker_concurrency = 5\n")
    lines = banner_of("kat_scheduler.runner", tmp_path, {"CELERY_CONFIG_MODULE": "site_celery"})
    assert any("concurrency: 5 " in line for line in lines), "".join(lines[-30:])
