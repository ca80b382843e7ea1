"""Dispatch: queue -> dispatcher -> Celery -> a no-op runner's start, beside plain Celery `send_task` to the
same runner in the same run. Celery on RabbitMQ (KAT_BENCH_BROKER_URL), queues on Redis (KAT_BENCH_REDIS_URL);
the runner is `celery -A kat_scheduler.runner worker -P threads -c 32` recording each start in Redis."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from celery import Celery

from benchmarks.harness import Figure, report
from kat_scheduler.config import load_settings
from kat_scheduler.dispatcher import Dispatcher, DispatchOptions, routes_from
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.queues.limits import PluginLimit
from kat_scheduler.runner.handlers import starts_key

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")
BROKER_URL = os.environ.get("KAT_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
RUNNER_CONCURRENCY = 32
ROOT = Path(__file__).resolve().parents[1]


def task(n: int, boefje: str = "dns-records", organisation: str | None = None) -> BoefjeTask:
    return BoefjeTask(boefje={"id": boefje}, input_ooi=f"Hostname|internet|h{n}.example",
                      organization=organisation or f"org{n % 10}")


def _starts_of(client: redis.Redis, key: str, marker: str) -> int:
    """Start lines that hold `marker` (a cheap look for one kind of task without parsing every line)."""
    return sum(1 for line in client.lrange(key, 0, -1) if '"event": "start"' in line and marker in line)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(poll)


def start_runner(prefix: str, queue: str, app: Celery) -> subprocess.Popen[bytes]:
    hostname = f"bench-{prefix}@localhost"
    env = dict(os.environ, CELERY_BROKER_URL=BROKER_URL, SCHEDULER_REDIS_URL=REDIS_URL, SCHEDULER_KEY_PREFIX=prefix,
               SCHEDULER_RUNNER_HANDLER="kat_scheduler.runner.handlers:record_starts", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "kat_scheduler.runner", "worker", "-Q", queue, "-E",
         "-P", "threads", "-c", str(RUNNER_CONCURRENCY), "-n", hostname, "--loglevel", "ERROR",
         "--without-gossip", "--without-mingle"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: bool(app.control.ping(destination=[hostname], timeout=0.3)), 30, "the runner")
    return process


def run(quick: bool = False) -> None:
    count = 500 if quick else 2000
    samples = 50 if quick else 200
    prefix = f"kat-bench-{uuid.uuid4().hex[:8]}"
    celery_queue = f"{prefix}-boefjes"
    client: redis.Redis = connect(REDIS_URL)
    app = Celery("kat-bench", broker=BROKER_URL)
    app.config_from_object("kat_scheduler.celery_defaults")
    settings = load_settings(key_prefix=prefix, hand_offs={
        "boefje": {"celery_queue": celery_queue, "slots": RUNNER_CONCURRENCY},
        "normalizer": {"celery_queue": f"{prefix}-normalizers", "slots": 1},
        "report": {"celery_queue": f"{prefix}-reports", "slots": 1}})
    task_name = settings.hand_off("boefje").task_name
    queue = PriorityQueue(client, "boefje", prefix=prefix)
    key = starts_key(prefix)
    started = lambda: int(client.llen(key)) // 2  # noqa: E731 - a start and an end line per task
    runner = start_runner(prefix, celery_queue, app)
    dispatcher = Dispatcher(app, client, {"boefje": queue}, routes_from(settings)[:1], DispatchOptions())
    try:
        # Warm both paths (connections, imports in the runner).
        for n in range(20):
            app.send_task(task_name, args=(task(n).model_dump(),), queue=celery_queue)
        wait_until(lambda: started() >= 20, 30, "warm-up")
        dispatcher.start()
        wait_until(dispatcher.events_ready.is_set, 10, "the dispatcher's events")

        # Throughput: plain Celery, then ours, each to `count` starts at the runner.
        payloads = [task(n).model_dump() for n in range(count)]
        before, began = started(), time.perf_counter()
        for payload in payloads:
            app.send_task(task_name, args=(payload,), task_id=payload["id"], queue=celery_queue)
        wait_until(lambda: started() >= before + count, 120, "plain Celery's tasks", poll=0.05)
        plain_rate = count / (time.perf_counter() - began)

        tasks = [task(n) for n in range(count)]
        before, began = started(), time.perf_counter()
        queue.push_many([(each, 1) for each in tasks])
        wait_until(lambda: started() >= before + count, 120, "the dispatched tasks", poll=0.05)
        ours_rate = count / (time.perf_counter() - began)
        report(Figure("dispatch throughput, queue to runner start", ours_rate, "tasks/s", plain_rate,
                      "plain send_task"))

        # Latency with a free slot: one task at a time, push (or send) to the runner's start.
        def latencies(send: Callable[[int], float]) -> list[float]:
            found = []
            for n in range(samples):
                before = started()
                sent_at = send(n)
                wait_until(lambda b=before: started() > b, 10, "a start")  # type: ignore[misc]
                line = json.loads(_last_start(client, key))
                found.append((line["at"] - sent_at) * 1000)
            return found

        def plain(n: int) -> float:
            payload = task(10_000_000 + n).model_dump()
            at = time.time()
            app.send_task(task_name, args=(payload,), task_id=payload["id"], queue=celery_queue)
            return at

        def ours(n: int) -> float:
            at = time.time()
            queue.push(task(20_000_000 + n), 1)
            return at

        plain_ms, ours_ms = latencies(plain), latencies(ours)
        for name, pick in (("p50", 0.50), ("p99", 0.99)):
            report(Figure(f"dispatch latency push to runner start {name}", _quantile(ours_ms, pick), "ms",
                          _quantile(plain_ms, pick), "plain send_task", lower_is_better=True))
        print(f"(idle median {statistics.median(ours_ms):.2f} ms over {samples} pushes)", flush=True)

        # Half the queue is one plugin limited to one task at a time: the other half's throughput.
        queue.set_limit("shodan", PluginLimit(concurrency=1))
        free = [task(30_000_000 + n, organisation=f"free{n % 10}") for n in range(count)]
        held = [task(40_000_000 + n, boefje="shodan") for n in range(count)]
        began = time.perf_counter()
        queue.push_many([(each, 1) for pair in zip(held, free, strict=True) for each in pair])
        wait_until(lambda: _starts_of(client, key, '"organisation": "free') >= count, 120, "the unlimited half",
                   poll=0.05)
        report(Figure("dispatch throughput of the unlimited half, the other half one plugin limited to 1 at a time",
                      count / (time.perf_counter() - began), "tasks/s", ours_rate, "the same run without a limit"))
    finally:
        dispatcher.stop()
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGTERM)
            runner.wait(20)
        for pattern in (f"{prefix}*", "{" + prefix + "*"):
            keys = list(client.scan_iter(match=pattern, count=5000))
            if keys:
                client.delete(*keys)
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(celery_queue)
        app.close()


def _last_start(client: redis.Redis, key: str) -> str:
    """The newest start line (the list holds start and end lines)."""
    for line in reversed(client.lrange(key, -4, -1)):  # type: ignore[union-attr]
        if '"event": "start"' in line:
            return str(line)
    raise LookupError("no start line")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
