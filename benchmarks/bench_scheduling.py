"""Scheduling throughput on the simulated KAT world, the real RabbitMQ and the real Redis:
mutation events turned into queued tasks end to end, and due schedules handled by the beat's pass."""

from __future__ import annotations

import http.client
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from urllib.parse import urlencode, urlsplit

import pika

from benchmarks.bench_queue import drop
from benchmarks.harness import Figure, Stopwatch, rate, report
from kat_scheduler.config import load_settings
from kat_scheduler.connectors.listeners import InProcessBus
from kat_scheduler.connectors.listeners.openkat import RAW_FILE_RECEIVED, SCAN_PROFILE_MUTATIONS
from kat_scheduler.context import AppContext
from kat_scheduler.listening import start_listeners
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import connect
from kat_scheduler.schedulers import BoefjeScheduler
from kat_scheduler.simulation import SimulatedKAT, World
from kat_scheduler.simulation.events import scan_profile_mutation
from kat_scheduler.simulation.world import ooi

REDIS_URL = os.environ.get("KAT_BENCH_REDIS_URL", "redis://localhost:6379/0")
RABBITMQ_URL = os.environ.get("KAT_BENCH_RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F")
ORG = "org1"
BOEFJES = ("dns-records", "leakix", "dns-sec-check")  # three boefjes for every Hostname


def world(hosts: int) -> World:
    plugins = {b: {"id": b, "type": "boefje", "scan_level": 1, "consumes": ["Hostname"]} for b in BOEFJES}
    oois = {pk: ooi(pk, 1) for pk in (f"Hostname|internet|host{n}.example" for n in range(hosts))}
    return World(seed=0, organisations={ORG: {"id": ORG, "name": "Org 1"}}, oois={ORG: oois}, plugins=plugins,
                 enabled={ORG: dict.fromkeys(BOEFJES, True)})


def serve_world(size: int, urls: Connection, stop: Event) -> None:
    """The simulated KAT services in a process of their own, as the real ones would be."""
    kat = SimulatedKAT.start(world(size), InProcessBus())
    urls.send((kat.katalogus_url, kat.octopoes_url, kat.bytes_url))
    stop.wait()
    kat.stop()


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        time.sleep(0.05)  # the poll runs in the measured process: rarely, so as not to slow it


def raw_zadd_rate(context: AppContext, prefix: str, count: int) -> float:
    """Tasks per second one pipelined redis-py client ZADDs: the raw reference."""
    members = {str(uuid.uuid4()): n for n in range(count)}

    def zadd() -> None:
        pipe = context.redis.pipeline(transaction=False)
        for member, score in members.items():
            pipe.zadd(f"{prefix}:raw", {member: score})
        pipe.execute()

    return rate(count, zadd)


def events_to_tasks(context: AppContext, prefix: str, events: int) -> None:
    mutations_queue, raw_queue = f"{prefix}-mutations", f"{prefix}-raw"
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    try:
        for queue in (mutations_queue, raw_queue):
            channel.queue_declare(queue, durable=True)
        for n in range(events):
            primary_key = f"Hostname|internet|host{n}.example"
            body = scan_profile_mutation(ORG, "create", primary_key, ooi(primary_key, 1))
            channel.basic_publish("", mutations_queue, pika.compat.as_bytes(_json(body)),
                                  pika.BasicProperties(delivery_mode=2, content_type="application/json"))
        raw = raw_zadd_rate(context, prefix, events * len(BOEFJES)) / len(BOEFJES)
        start = time.perf_counter()
        running = start_listeners(context, {SCAN_PROFILE_MUTATIONS: mutations_queue, RAW_FILE_RECEIVED: raw_queue})
        try:
            wait_until(lambda: context.boefjes.size() >= events * len(BOEFJES), 600)
            elapsed = time.perf_counter() - start
        finally:
            for listener, thread in running:
                listener.stop()
                thread.join(30)
        report(Figure(f"mutation events to queued tasks ({len(BOEFJES)} boefjes each, {events:,} events)",
                      events / elapsed, "events/s", raw, "raw pipelined ZADD of the same tasks"))
    finally:
        for queue in (mutations_queue, raw_queue, f"{mutations_queue}.dead", f"{raw_queue}.dead"):
            channel.queue_delete(queue)
        connection.close()


def bytes_lookup_cpu(context: AppContext, bytes_api: str, count: int) -> None:
    """Client CPU of the one Bytes request a new object costs (the last runs on it), beside a bare
    keep-alive http.client request for the same answer, alternating in rounds."""
    client = context.bytes
    token = client.login()
    parts = urlsplit(bytes_api)
    bare = http.client.HTTPConnection(parts.hostname, parts.port)
    watch = Stopwatch(clock=time.process_time)
    per_round = count // 5
    for round_number in range(5):
        hosts = [f"Hostname|internet|host{round_number * per_round + n}.example" for n in range(per_round)]
        with watch.timing("ours", per_round):
            for host in hosts:
                client.get_last_runs(ORG, host, BOEFJES)
        with watch.timing("bare", per_round):
            for host in hosts:
                query = urlencode({"input_ooi": host, "organization": ORG, "limit": 100, "descending": "true"})
                bare.request("GET", f"{parts.path}/bytes/boefje_meta?{query}",
                             headers={"Authorization": f"bearer {token}"})
                bare.getresponse().read()
    bare.close()
    report(Figure("Bytes last-runs request, client CPU", 1e6 / watch.rate("ours"), "µs", 1e6 / watch.rate("bare"),
                  "a bare keep-alive http.client request", lower_is_better=True))


def due_schedules(context: AppContext, prefix: str, count: int) -> None:
    """`count` schedules whose work last ran two days ago, all due: the beat's pass over them."""
    repository = context.schedules["boefje"]
    now = datetime.now(UTC)
    schedules, last_runs = [], {}
    for n in range(count):
        task = BoefjeTask(boefje={"id": BOEFJES[n % 3]}, input_ooi=f"Hostname|internet|host{n}.example",
                          organization=ORG)
        data = task.model_dump(mode="json", exclude={"id"}, exclude_none=True)
        schedules.append(repository.build(ORG, data, task.hash, deadline_at=now - timedelta(minutes=1), now=now))
        last_runs[task.hash] = int((now - timedelta(days=2)).timestamp() * 1000)
    for start in range(0, count, 5000):
        repository.save_many(schedules[start:start + 5000], new=True)
    context.redis.hset(f"{context.boefjes.base}:lastrun", mapping=last_runs)

    def raw_read_and_write() -> None:  # the least any pass does per schedule: read it, write it back
        keys = [f"{prefix}:raw:{n}" for n in range(count)]
        pipe = context.redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.set(key, "x" * 300)
        pipe.execute()

    raw = rate(count, raw_read_and_write)
    scheduler = BoefjeScheduler(context)
    batch = context.settings.schedule_batch_size
    start = time.perf_counter()
    while scheduler.run_due_schedules(batch):
        pass
    elapsed = time.perf_counter() - start
    assert context.boefjes.size() == count, f"{context.boefjes.size()} of {count} rescans queued"
    report(Figure(f"due schedules handled by the beat's pass ({count:,}, batches of {batch})", count / elapsed,
                  "schedules/s", raw, "raw pipelined GET+SET per schedule"))


def _json(body: object) -> str:
    import json

    return json.dumps(body)


def run(quick: bool = False) -> None:
    events, schedules = (2_000, 10_000) if quick else (10_000, 100_000)
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    stop = spawn.Event()
    services = spawn.Process(target=serve_world, args=(max(events, schedules), send, stop), daemon=True)
    services.start()
    katalogus, octopoes, bytes_api = receive.recv()
    prefix = f"kat-bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(katalogus_api=katalogus, octopoes_api=octopoes, bytes_api=bytes_api,
                             key_prefix=prefix, schedule_batch_size=1000)
    context = AppContext.create(settings, redis_client=connect(REDIS_URL))
    try:
        events_to_tasks(context, prefix, events)
        drop(context.redis, prefix)
        bytes_lookup_cpu(context, bytes_api, 1_000 if quick else 5_000)
        due_schedules(context, prefix, schedules)
    finally:
        drop(context.redis, prefix)
        context.close()
        stop.set()
        services.join(30)
