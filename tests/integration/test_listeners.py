"""The RabbitMQ listener against the real broker: throughput without loss, dead letters, reconnects."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from kat_scheduler.connectors.listeners import Listener, RawFileReceivedListener, ScanProfileMutationListener
from kat_scheduler.models import RawFileReceived, ScanProfileMutation
from kat_scheduler.simulation import RabbitPublisher, SimulatedKAT, World
from tests.factories.rabbitmq_fixtures import TestPublisher, close_connections
from tests.factories.waiting import wait_for

pytestmark = pytest.mark.integration


def mutation(n: int, org: str = "org1") -> dict[str, Any]:
    key = f"Hostname|internet|host{n}.example"
    return {"operation": "update", "primary_key": key, "client_id": org,
            "value": {"primary_key": key, "object_type": "Hostname",
                      "scan_profile": {"level": 1, "reference": key, "scan_profile_type": "declared"}}}


def publish_mutations(publisher: TestPublisher, queue: str, numbers: range) -> set[str]:
    publisher.declare(queue)
    for n in numbers:
        publisher.publish(queue, mutation(n))
    return {mutation(n)["primary_key"] for n in numbers}


@contextmanager
def running(listener: Listener[Any]) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        listener.stop()
        thread.join(15)
        assert not thread.is_alive(), "the listener did not stop"


class Recorder:
    """A handler that records primary keys; the worker thread calls it, the test thread reads it."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, message: ScanProfileMutation) -> None:
        self.keys.append(message.primary_key)


def test_ten_thousand_mutations_are_each_handled_once(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher
) -> None:
    published = publish_mutations(rabbit_publisher, rabbit_queue, range(10_000))
    recorder = Recorder()
    listener = ScanProfileMutationListener(rabbitmq_url, recorder, queue_name=rabbit_queue,
                                           prefetch_count=100)
    with running(listener):
        wait_for(lambda: len(recorder.keys) >= 10_000, 40, "10,000 handled mutations")
    assert set(recorder.keys) == published
    assert max(Counter(recorder.keys).values()) == 1
    assert listener.handled == 10_000 and listener.dead_lettered == 0 and listener.connections == 1
    assert rabbit_publisher.message_count(rabbit_queue) == 0  # every one acked before the listener stopped


def test_a_malformed_message_is_dead_lettered_and_the_next_one_handled(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    publish_mutations(rabbit_publisher, rabbit_queue, range(3))
    rabbit_publisher.publish(rabbit_queue, b"{this is not json")
    rabbit_publisher.publish(rabbit_queue, {"operation": "explode", "primary_key": "x", "client_id": "org7"})
    published = publish_mutations(rabbit_publisher, rabbit_queue, range(3, 6))
    recorder = Recorder()
    listener = ScanProfileMutationListener(rabbitmq_url, recorder, queue_name=rabbit_queue)
    with running(listener):
        wait_for(lambda: len(recorder.keys) == 6 and listener.dead_lettered == 2, what="6 handled, 2 dead")
    assert published <= set(recorder.keys)
    dead = [rabbit_publisher.get(f"{rabbit_queue}.dead") for _ in range(3)]
    assert dead[2] is None
    reasons = [entry[0].headers["x-dead-reason"] for entry in dead if entry]
    assert reasons[0].startswith("malformed: ") and "JSON" in reasons[0]
    assert reasons[1].startswith("malformed: operation")
    assert dead[0] and dead[0][1] == b"{this is not json"
    assert "organisation org7" in caplog.text
    assert rabbit_publisher.message_count(rabbit_queue) == 0


def test_a_failing_handler_is_requeued_then_dead_lettered(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher
) -> None:
    publish_mutations(rabbit_publisher, rabbit_queue, range(5))
    calls: Counter[str] = Counter()
    poison = mutation(2)["primary_key"]

    def handler(message: ScanProfileMutation) -> None:
        calls[message.primary_key] += 1
        if message.primary_key == poison:
            raise RuntimeError("the scheduler cannot take this one")

    listener = ScanProfileMutationListener(rabbitmq_url, handler, queue_name=rabbit_queue, max_redeliveries=2)
    with running(listener):
        wait_for(lambda: listener.dead_lettered == 1 and listener.handled == 4, what="one dead letter")
    assert calls[poison] == 3  # the first delivery and two redeliveries
    assert all(count == 1 for key, count in calls.items() if key != poison)
    dead = rabbit_publisher.get(f"{rabbit_queue}.dead")
    assert dead is not None
    properties, body = dead
    assert ScanProfileMutation.model_validate_json(body).primary_key == poison
    assert properties.headers["x-failures"] == 3
    assert properties.headers["x-original-queue"] == rabbit_queue
    assert "the scheduler cannot take this one" in properties.headers["x-dead-reason"]
    assert rabbit_publisher.message_count(rabbit_queue) == 0


def test_a_connection_closed_by_the_server_is_reestablished_without_loss(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher
) -> None:
    published = publish_mutations(rabbit_publisher, rabbit_queue, range(3000))
    recorder = Recorder()
    paused, resume = threading.Event(), threading.Event()

    def handler(message: ScanProfileMutation) -> None:
        recorder(message)
        if len(recorder.keys) == 1000:  # hold the stream mid-way until the connection has been cut
            paused.set()
            resume.wait(30)

    name = f"kat-test-listener-{uuid.uuid4().hex[:8]}"
    listener = ScanProfileMutationListener(rabbitmq_url, handler, queue_name=rabbit_queue,
                                           connection_name=name, reconnect_backoff=0.05)
    with running(listener):
        try:
            wait_for(paused.is_set, what="the handler to reach message 1,000")
            assert close_connections(name) == 1
            wait_for(lambda: listener.connections == 2, what="the listener to reconnect")
        finally:
            resume.set()
        wait_for(lambda: set(recorder.keys) == published, 30, "every published mutation")
    assert set(recorder.keys) == published
    duplicates = len(recorder.keys) - len(published)
    # Only what was unacked at the cut comes again: at least the message in hand, at most a prefetch window.
    assert 1 <= duplicates <= listener.prefetch_count
    assert rabbit_publisher.message_count(rabbit_queue) == 0


def test_stop_is_idempotent_and_works_before_run(rabbitmq_url: str, rabbit_queue: str) -> None:
    listener = ScanProfileMutationListener(rabbitmq_url, Recorder(), queue_name=rabbit_queue)
    listener.stop()
    listener.stop()
    started = time.monotonic()
    listener.run()  # returns at once: it was asked to stop
    assert time.monotonic() - started < 5
    assert listener.connections == 0


def test_an_unreachable_broker_is_retried_until_stopped() -> None:
    listener = ScanProfileMutationListener("amqp://guest:guest@127.0.0.1:1/%2F", Recorder(),
                                           reconnect_backoff=0.01, max_reconnect_backoff=0.05)
    with running(listener):
        wait_for(lambda: listener.connection_attempts >= 3, what="three connection attempts")
    assert listener.connections == 0 and listener.stopping


def test_simulated_bytes_publishes_raw_files_that_the_raw_file_listener_receives(
    rabbitmq_url: str, rabbit_queue: str
) -> None:
    received: list[RawFileReceived] = []
    listener = RawFileReceivedListener(rabbitmq_url, received.append, queue_name=rabbit_queue)
    world = World.generate(seed=3, organisations=1, oois_per_organisation=10)
    with RabbitPublisher(rabbitmq_url) as publisher, \
            SimulatedKAT.start(world, publisher, raw_file_queue=rabbit_queue) as kat, running(listener):
        meta = kat.bytes.record_run("org1", "dns-records", "Hostname|internet|host1.org1.example",
                                    datetime.now(UTC), datetime.now(UTC))
        raw_id = kat.bytes.save_raw(meta["id"], b"answer", ["text/plain"])
        wait_for(lambda: len(received) == 1, what="the raw_file_received event")
    assert received[0].raw_data.id == raw_id and received[0].organization == "org1"
    assert received[0].raw_data.mime_type_values == ["boefje/dns-records", "text/plain"]


def test_a_slow_handler_keeps_the_connection_alive(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher
) -> None:
    published = publish_mutations(rabbit_publisher, rabbit_queue, range(3))
    recorder = Recorder()
    slow_work = threading.Event()

    def handler(message: ScanProfileMutation) -> None:
        if not recorder.keys:
            slow_work.wait(3.5)  # a handler busy for over three heartbeat intervals
        recorder(message)

    separator = "&" if "?" in rabbitmq_url else "?"
    listener = ScanProfileMutationListener(f"{rabbitmq_url}{separator}heartbeat=1", handler,
                                           queue_name=rabbit_queue)
    with running(listener):
        wait_for(lambda: len(recorder.keys) == 3, what="three handled mutations")
    assert set(recorder.keys) == published
    assert listener.connections == 1  # the broker never dropped us for missed heartbeats
    assert rabbit_publisher.message_count(rabbit_queue) == 0


def test_batches_are_handled_together_and_a_bad_message_costs_only_itself(
    rabbitmq_url: str, rabbit_queue: str, rabbit_publisher: TestPublisher
) -> None:
    published = publish_mutations(rabbit_publisher, rabbit_queue, range(500))
    rabbit_publisher.publish(rabbit_queue, b"not json")
    poison = mutation(7)["primary_key"]
    batch_sizes: list[int] = []
    singles = Recorder()

    def handle_batch(messages: list[ScanProfileMutation]) -> None:
        if any(m.primary_key == poison for m in messages):
            raise RuntimeError("a poisoned batch")
        batch_sizes.append(len(messages))

    def handle_one(message: ScanProfileMutation) -> None:
        if message.primary_key == poison:
            raise RuntimeError("still poisoned")
        singles(message)

    listener = ScanProfileMutationListener(rabbitmq_url, handle_one, queue_name=rabbit_queue, max_redeliveries=1,
                                           batch_handler=handle_batch, batch_size=50)
    with running(listener):
        wait_for(lambda: listener.handled == 499 and listener.dead_lettered == 2, what="499 handled, 2 dead")
    assert max(batch_sizes) > 1 and max(batch_sizes) <= 50  # batches, bounded
    assert sum(batch_sizes) + len(singles.keys) == 499
    assert poison not in singles.keys and set(singles.keys) < published
    assert rabbit_publisher.message_count(rabbit_queue) == 0
