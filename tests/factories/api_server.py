"""`kat-scheduler api` as a process of its own on a free port: what real clients talk to over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def http_server(module_argv: Sequence[str], env: Mapping[str, str], ready: str = "GET /health",
                log: Path | None = None) -> Iterator[str]:
    """`python -m <module_argv> --host 127.0.0.1 --port <free>`, answering 2xx to `ready` ("METHOD path")
    within START_TIMEOUT_SECONDS; yields its base URL."""
    port = free_port()
    output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    process = subprocess.Popen([sys.executable, "-m", *module_argv, "--host", "127.0.0.1", "--port", str(port)],
                               env={**os.environ, **env}, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    method, path = ready.split(" ", 1)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.request(method, f"{base}{path}", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(module_argv)} did not start (exit code {process.poll()})")
            time.sleep(0.05)  # the poll's interval; the deadline above bounds the wait
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        if log is not None:
            output.close()  # type: ignore[union-attr]


@contextmanager
def api_server(redis_url: str, prefix: str, env: Mapping[str, str] | None = None,
               log: Path | None = None) -> Iterator[str]:
    """`kat-scheduler api` on `redis_url` under key prefix `prefix`, with settings `env`."""
    settings = {"SCHEDULER_REDIS_URL": redis_url, "SCHEDULER_KEY_PREFIX": prefix, "SCHEDULER_API_TOKEN": "",
                **(env or {})}
    with http_server(["kat_scheduler.cli", "api"], settings, log=log) as base:
        yield base


@contextmanager
def api_server_of_its_own(env: Mapping[str, str], log_dir: Path, name: str = "kat-api") -> Iterator[str]:
    """`kat-scheduler api` on the test Redis under a key prefix of its own, removed afterwards."""
    from kat_scheduler.queues import connect
    from tests.factories.redis_fixtures import REDIS_URL, delete_prefixed

    prefix = f"{name}-{uuid.uuid4().hex[:10]}"
    client = connect(REDIS_URL)
    try:
        with api_server(REDIS_URL, prefix, env, log=log_dir / "api.log") as base:
            yield base
    finally:
        delete_prefixed(client, prefix)
        client.close()
