"""`kat-scheduler api` as a process of its own on a free port: what real clients talk to over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def api_server(redis_url: str, prefix: str, env: Mapping[str, str] | None = None,
               log: Path | None = None) -> Iterator[str]:
    """Serve the API on `redis_url` under key prefix `prefix`, with settings `env`; yields its base URL."""
    port = free_port()
    environment = {**os.environ, "SCHEDULER_REDIS_URL": redis_url, "SCHEDULER_KEY_PREFIX": prefix,
                   "SCHEDULER_API_TOKEN": "", **(env or {})}
    output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    process = subprocess.Popen([sys.executable, "-m", "kat_scheduler.cli", "api", "--host", "127.0.0.1",
                                "--port", str(port)], env=environment, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (exit code {process.poll()})")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        if log is not None:
            output.close()  # type: ignore[union-attr]
