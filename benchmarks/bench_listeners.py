"""Listener throughput beside a bare pika consumer, and Katalogus calls saved by the plugin cache.

(a) messages/s the Listener handles from the real RabbitMQ with a no-op handler, beside a bare
    pika consumer (basic_consume, manual ack, same prefetch) of as many messages on the same kind
    of queue in the same run. Best of a few rounds each, to smooth out a shared 2-core machine.
(b) Katalogus HTTP calls per 1,000 mutation events of one organisation through
    KatalogusClient.get_boefjes_by_ooi_type, with the cache, beside the 1,000 calls without it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

import pika

from benchmarks.harness import Figure, report
from kat_scheduler.connectors.listeners import ScanProfileMutationListener
from kat_scheduler.connectors.services import KatalogusClient
from kat_scheduler.models import ScanProfileMutation
from kat_scheduler.simulation import SimulatedKAT, World, generate_mutations

RABBITMQ_URL = os.environ.get("KAT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PREFETCH = 100


def _fill(queue: str, count: int, world: World) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                      content_type="application/json")
    bodies = [json.dumps(event).encode() for event in generate_mutations(world, 1000, seed=1)]
    for number in range(count):
        channel.basic_publish("", queue, bodies[number % len(bodies)], properties)
    connection.close()


def _delete(*queues: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    for queue in queues:
        channel.queue_delete(queue)
    connection.close()


def bare_consumer_rate(queue: str, count: int) -> float:
    """A plain pika consumer: ack each message in the callback, stop after `count`."""
    seen = [0]
    start = time.perf_counter()
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    channel.queue_declare(queue, durable=True)

    def on_message(channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        seen[0] += 1
        if seen[0] >= count:
            channel.stop_consuming()

    channel.basic_consume(queue, on_message, auto_ack=False)
    channel.start_consuming()
    elapsed = time.perf_counter() - start
    connection.close()
    return count / elapsed


def listener_rate(queue: str, count: int) -> float:
    """Our Listener with a no-op handler (decoding and validation included), until `count` handled."""
    done = threading.Event()
    handled = [0]

    def handler(_message: ScanProfileMutation) -> None:
        handled[0] += 1
        if handled[0] >= count:
            done.set()

    listener = ScanProfileMutationListener(RABBITMQ_URL, handler, queue_name=queue, prefetch_count=PREFETCH)
    start = time.perf_counter()
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    if not done.wait(300):
        raise RuntimeError(f"the listener handled only {handled[0]} of {count} messages")
    elapsed = time.perf_counter() - start
    listener.stop()
    thread.join(30)
    _delete(listener.dead_queue)
    return count / elapsed


def bench_throughput(count: int, rounds: int, world: World) -> None:
    bare_rates, listener_rates = [], []
    for _ in range(rounds):
        bare_queue, our_queue = (f"kat-bench-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("bare", "listener"))
        try:
            _fill(bare_queue, count, world)
            _fill(our_queue, count, world)
            bare_rates.append(bare_consumer_rate(bare_queue, count))
            listener_rates.append(listener_rate(our_queue, count))
        finally:
            _delete(bare_queue, our_queue)
    report(Figure("listener messages/s (no-op handler)", max(listener_rates), "msg/s",
                  max(bare_rates), "bare pika consumer"))


def bench_katalogus_calls(events: int, world: World) -> None:
    organisation = "org1"
    mutations = list(generate_mutations(world, events, seed=2, organisation=organisation))
    with SimulatedKAT.start(world) as kat:
        calls = {}
        for label, ttl in (("cached", 30.0), ("uncached", 0.0)):
            client = KatalogusClient(kat.katalogus_url, cache_ttl=ttl)
            for mutation in mutations:
                # The OOI type is the first part of the primary key, also on deletes (value null).
                client.get_boefjes_by_ooi_type(organisation, mutation["primary_key"].split("|", 1)[0])
            calls[label] = client.request_count * 1000 / events
            client.close()
    report(Figure("katalogus calls per 1,000 mutation events", calls["cached"], "calls",
                  calls["uncached"], "without cache", lower_is_better=True))


def run(quick: bool = False) -> None:
    world = World.generate(seed=1, organisations=3, oois_per_organisation=500)
    bench_throughput(count=2_000 if quick else 20_000, rounds=1 if quick else 3, world=world)
    bench_katalogus_calls(1000, world)
