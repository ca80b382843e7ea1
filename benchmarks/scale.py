"""How kat_scheduler's costs grow with the world: 100 organisations, 20 boefjes, up to a million tasks.

    python -m benchmarks.scale [--sizes 10000 100000 1000000] [--pass-sizes 10000 100000] [--write]

For each number of queued tasks: Redis memory per task and in total, batch pushes per second, and
claims per second with that many queued. For each number of objects: the time a new boefje's pass
over all of them takes (Octopoes paging, one Bytes look-up per object, the pushes), against the
simulated services in a process of their own. `--write` puts the table in docs/performance.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

import redis

from benchmarks.bench_queue import drop, memory_of
from kat_scheduler.config import load_settings
from kat_scheduler.connectors.listeners import InProcessBus
from kat_scheduler.context import AppContext
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.repositories import ScheduleRepository
from kat_scheduler.schedulers import BoefjeScheduler
from kat_scheduler.simulation import SimulatedKAT, World
from kat_scheduler.simulation.world import ooi

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")
ORGANISATIONS = 100
BOEFJES = [f"boefje-{n:02d}" for n in range(20)]
DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
MARK = "<!-- scale table -->"


def queue_figures(size: int) -> dict[str, float]:
    client = connect(REDIS_URL)
    prefix = f"kat-scale-{uuid.uuid4().hex[:8]}"
    queue = PriorityQueue(client, "boefje", prefix=prefix)
    try:
        objects_per_org = max(1, size // (ORGANISATIONS * len(BOEFJES)))
        pushed = 0
        start = time.perf_counter()
        for org in range(ORGANISATIONS):
            tasks = [BoefjeTask(boefje={"id": boefje}, input_ooi=f"Hostname|internet|host{n}.org{org}.example",
                                organization=f"org{org}")
                     for n in range(objects_per_org) for boefje in BOEFJES]
            queue.push_many([(task, n) for n, task in enumerate(tasks)])
            pushed += len(tasks)
        push_seconds = time.perf_counter() - start
        queue_only = memory_of(client, prefix)
        add_schedules(client, prefix, queue)
        total = memory_of(client, prefix)
        claims = min(5000, pushed)
        start = time.perf_counter()
        for _ in range(claims):
            queue.claim_one()
        claim_rate = claims / (time.perf_counter() - start)
        return {"tasks": pushed, "bytes_per_task": queue_only / pushed, "with_schedule": total / pushed,
                "total_mb": total / 2**20,
                "push_rate": pushed / push_seconds, "claim_rate": claim_rate}
    finally:
        drop(client, prefix)


def add_schedules(client: redis.Redis, prefix: str, queue: PriorityQueue) -> None:
    """A schedule for every queued task, as the boefje scheduler keeps one per queued work identity."""
    schedules = ScheduleRepository(client, prefix, "boefje")
    deadline = datetime.now(UTC) + timedelta(days=1)
    for organisation in queue.counts():
        offset = 0
        while records := queue.list_queued(organisation, offset, 2_000):
            schedules.save_many([schedules.build(r.organisation, {k: v for k, v in r.data.items() if k != "id"},
                                                 r.hash, deadline_at=deadline) for r in records], new=True)
            offset += len(records)


def last_run_bytes(tasks: int = 20_000) -> float:
    """What one work identity's last run costs (P:lastrun): the same runs acked with and without it."""
    client = connect(REDIS_URL)
    sizes = []
    for keeps in (False, True):
        prefix = f"kat-scale-{uuid.uuid4().hex[:8]}"
        queue = PriorityQueue(client, "boefje", prefix=prefix, keep_last_runs=keeps)
        try:
            queue.push_many([(BoefjeTask(boefje={"id": "b"}, input_ooi=f"Hostname|internet|h{n}.example",
                                         organization="org"), n) for n in range(tasks)])
            while claimed := queue.claim(1_000):
                for record in claimed:
                    queue.ack(record.id)
            sizes.append(memory_of(client, prefix))
        finally:
            drop(client, prefix)
    return (sizes[1] - sizes[0]) / tasks


def scale_world(objects: int) -> World:
    """`objects` hostnames over 100 organisations, all at level 1, and one boefje that consumes them."""
    per_org = objects // ORGANISATIONS
    orgs = {f"org{o}": {"id": f"org{o}", "name": f"Org {o}"} for o in range(ORGANISATIONS)}
    oois = {org: {pk: ooi(pk, 1) for pk in (f"Hostname|internet|host{n}.{org}.example" for n in range(per_org))}
            for org in orgs}
    plugin = {"id": "new-boefje", "type": "boefje", "scan_level": 1, "consumes": ["Hostname"]}
    return World(seed=0, organisations=orgs, oois=oois, plugins={"new-boefje": plugin},
                 enabled={org: {"new-boefje": True} for org in orgs})


def serve(objects: int, urls: Connection, stop: Event) -> None:
    kat = SimulatedKAT.start(scale_world(objects), InProcessBus())
    urls.send((kat.katalogus_url, kat.octopoes_url, kat.bytes_url))
    stop.wait()
    kat.stop()


def new_boefje_pass(objects: int) -> dict[str, float]:
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    stop = spawn.Event()
    services = spawn.Process(target=serve, args=(objects, send, stop), daemon=True)
    services.start()
    katalogus, octopoes, bytes_api = receive.recv()
    prefix = f"kat-scale-{uuid.uuid4().hex[:8]}"
    settings = load_settings(katalogus_api=katalogus, octopoes_api=octopoes, bytes_api=bytes_api, key_prefix=prefix)
    context = AppContext.create(settings, redis_client=connect(REDIS_URL))
    try:
        scheduler = BoefjeScheduler(context)
        for org in range(ORGANISATIONS):
            scheduler.discover_new_boefjes(f"org{org}")
        start = time.perf_counter()
        while True:  # as the beat runs it: half a tick's worth in each pass, a pass every tick (1 s)
            pass_started = time.monotonic()
            if not scheduler.work_on_new_boefjes_for(0.5):
                break
            time.sleep(max(0.0, pass_started + 1.0 - time.monotonic()))
        seconds = time.perf_counter() - start
        queued = context.boefjes.size()
        assert queued == objects, f"{queued} of {objects} objects got a task"
        return {"objects": objects, "seconds": seconds, "rate": objects / seconds}
    finally:
        drop(context.redis, prefix)
        context.close()
        stop.set()
        services.join(30)


def table(queues: list[dict[str, float]], passes: list[dict[str, float]]) -> str:
    lines = ["| queued tasks | Redis bytes per task | with its schedule | Redis total with schedules (MiB) "
             "| batch push (tasks/s) | claim (tasks/s) |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {q['tasks']:,.0f} | {q['bytes_per_task']:,.0f} | {q['with_schedule']:,.0f} | {q['total_mb']:,.1f} "
              f"| {q['push_rate']:,.0f} | {q['claim_rate']:,.0f} |" for q in queues]
    lines += ["", "| objects | new-boefje pass (s) | objects/s |", "|---:|---:|---:|"]
    lines += [f"| {p['objects']:,.0f} | {p['seconds']:,.1f} | {p['rate']:,.0f} |" for p in passes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--pass-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--write", action="store_true", help="put the table in docs/performance.md")
    args = parser.parse_args()
    queues = []
    for size in args.sizes:
        queues.append(queue_figures(size))
        print(queues[-1], flush=True)
    passes = []
    for objects in args.pass_sizes:
        passes.append(new_boefje_pass(objects))
        print(passes[-1], flush=True)
    rendered = table(queues, passes)
    if queues:
        rendered += f"\n\nA work identity's last run (`P:lastrun`): {last_run_bytes():,.0f} bytes."
    print(rendered)
    if args.write:
        text = DOC.read_text()
        head, _, rest = text.partition(MARK)
        _, _, tail = rest.partition(MARK)
        DOC.write_text(f"{head}{MARK}\n{rendered}\n{MARK}{tail}")


if __name__ == "__main__":
    main()
