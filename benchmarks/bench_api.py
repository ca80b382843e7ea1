"""The HTTP API as a runner sees it: `kat-scheduler api` in a process of its own, loaded by wrk (a load
generator in C, in a process of its own) over 1 and 8 keep-alive connections, beside a bare endpoint on
the same uvicorn with the same flags (benchmarks/bare_api.py), measured in alternating rounds.

Figures: requests/s and the p50 and p99 latency of push (as the web UI pushes), pop (as a runner pops:
no body, no Content-Type), PATCH to running (as a runner's worker starts a task) and POST /tasks (a web
UI task list of one organisation), each as a ratio of
the bare endpoint's at the same number of connections. Needs `wrk` (Debian's package `wrk`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_queue import drop, tasks
from benchmarks.harness import Figure, report
from kat_scheduler.queues import PriorityQueue, connect
from tests.factories.api_server import api_server, http_server

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")
WRK_SCRIPTS = Path(__file__).parent / "wrk"
CONNECTIONS = (1, 8)
POP_BACKLOG = 150_000  # tasks queued before the pop rounds, more than they can take
PATCHED = 10_000  # popped tasks the PATCH rounds mark running, in turn
TASK_LIST = json.dumps({"filters": [{"column": "organisation", "operator": "==", "value": "org3"}]})
TASK_LIST_PATH = "/tasks?limit=50&offset=0&scheduler_id=boefje&task_type=boefje"


@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float


def wrk(url: str, connections: int, seconds: float, script: str, env: dict[str, str] | None = None) -> Load:
    """One wrk run; fails when any answer was not 2xx or 3xx."""
    threads = min(connections, 2)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(WRK_SCRIPTS / script), url], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors from {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Load(rate, _percentile(out, "50%"), _percentile(out, "99%"))


def _percentile(out: str, which: str) -> float:
    value, unit = re.search(rf"^\s+{which}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@contextmanager
def servers(prefix: str) -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        api = stack.enter_context(api_server(REDIS_URL, prefix))
        bare = stack.enter_context(http_server(["benchmarks.bare_api"], {}, ready="POST /bare"))
        yield api, bare


def run(quick: bool = False) -> None:
    if shutil.which("wrk") is None:
        raise RuntimeError("the API benchmark needs wrk: apt-get install wrk")
    seconds, rounds = (2, 1) if quick else (4, 3)
    client = connect(REDIS_URL)
    prefix = f"kat-bench-api-{uuid.uuid4().hex[:8]}"
    try:
        with servers(prefix) as (api, bare), tempfile.TemporaryDirectory() as stack_dir:
            queue = PriorityQueue(client, "boefje", prefix=prefix)
            samples: dict[tuple[str, int], list[Load]] = {}

            def measure(name: str, connections: int, url: str, script: str, **env: str) -> None:
                samples.setdefault((name, connections), []).append(wrk(url, connections, seconds, script, env))

            for round_number in range(rounds):
                for connections in CONNECTIONS:
                    measure("bare", connections, f"{bare}/bare", "post.lua")
                    measure("push", connections, api, "push.lua", WRK_RUN=f"r{round_number}c{connections}")
                    measure("bare", connections, f"{bare}/bare", "post.lua")
                    measure("tasks", connections, f"{api}{TASK_LIST_PATH}", "post.lua", WRK_BODY=TASK_LIST,
                            WRK_CONTENT_TYPE="application/json")
            queue.push_many((task, 1) for task in tasks(POP_BACKLOG, start=10_000_000))
            for _ in range(rounds):
                for connections in CONNECTIONS:
                    measure("bare", connections, f"{bare}/bare", "post.lua")
                    measure("pop", connections, f"{api}/schedulers/boefje/pop?limit=1", "post.lua")
            ids = Path(stack_dir) / "popped.txt"
            ids.write_text("\n".join(record.id for record in queue.claim(PATCHED, lease_seconds=3600)))
            for _ in range(rounds):
                for connections in CONNECTIONS:
                    measure("bare", connections, f"{bare}/bare", "post.lua")
                    measure("patch", connections, api, "patch.lua", WRK_IDS=str(ids))
            for connections in CONNECTIONS:
                reference = _median(samples["bare", connections])
                for name, label in (("push", "api push"), ("pop", "api pop"), ("patch", "api PATCH running"),
                                    ("tasks", "api POST /tasks")):
                    ours = _median(samples[name, connections])
                    about = f"{label}, {connections} connection{'s' if connections > 1 else ''}"
                    report(Figure(about, ours.requests_per_second, "requests/s", reference.requests_per_second,
                                  "bare endpoint"))
                    report(Figure(f"{about}, p50", ours.p50_ms, "ms", reference.p50_ms, "bare endpoint",
                                  lower_is_better=True))
                    report(Figure(f"{about}, p99", ours.p99_ms, "ms", reference.p99_ms, "bare endpoint",
                                  lower_is_better=True))
    finally:
        drop(client, prefix)
        client.close()


def _median(loads: list[Load]) -> Load:
    return Load(statistics.median(load.requests_per_second for load in loads),
                statistics.median(load.p50_ms for load in loads), statistics.median(load.p99_ms for load in loads))
