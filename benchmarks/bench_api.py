"""The HTTP API over real HTTP (uvicorn in a subprocess, started by `kat-scheduler api`), beside the
queue's own push and claim in the same run on the same Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from benchmarks.bench_queue import drop, tasks
from benchmarks.harness import Figure, rate, report
from kat_scheduler.queues import PriorityQueue, connect

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")
START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def api_server(prefix: str) -> Iterator[str]:
    """`kat-scheduler api` on a free port with its own key prefix; yields its base URL."""
    port = free_port()
    env = {**os.environ, "SCHEDULER_REDIS_URL": REDIS_URL, "SCHEDULER_KEY_PREFIX": prefix,
           "SCHEDULER_API_TOKEN": ""}
    process = subprocess.Popen([sys.executable, "-m", "kat_scheduler.cli", "api", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if requests.get(f"{base}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (exit code {process.poll()})")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def run(quick: bool = False) -> None:
    count = 500 if quick else 3000
    client = connect(REDIS_URL)
    api_prefix = f"kat-bench-api-{uuid.uuid4().hex[:8]}"
    raw_prefix = f"kat-bench-api-raw-{uuid.uuid4().hex[:8]}"
    queue = PriorityQueue(client, "boefje", prefix=raw_prefix)
    try:
        direct = tasks(count)
        push_reference = rate(count, lambda: [queue.push(task, 1) for task in direct])
        claim_reference = rate(count, lambda: [queue.claim(1) for _ in range(count)])
        with api_server(api_prefix) as base, requests.Session() as session:
            bodies = [{"organisation": task.organization, "data": task.model_dump(mode="json", exclude={"id"})}
                      for task in tasks(count)]

            def push_all() -> None:
                for body in bodies:
                    response = session.post(f"{base}/schedulers/boefje/push", json=body)
                    if response.status_code != 201:
                        raise RuntimeError(f"push answered {response.status_code}: {response.text}")

            def pop_all() -> None:
                for _ in range(count):
                    if not session.post(f"{base}/schedulers/boefje/pop").json()["results"]:
                        raise RuntimeError("pop found the queue empty early")

            push_rate = rate(count, push_all)
            report(Figure("api push", push_rate, "requests/s", push_reference, "PriorityQueue.push"))
            pop_rate = rate(count, pop_all)
            report(Figure("api pop", pop_rate, "requests/s", claim_reference, "PriorityQueue.claim"))
    finally:
        drop(client, api_prefix)
        drop(client, raw_prefix)
        client.close()
