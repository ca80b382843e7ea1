"""RabbitMQ for the integration lane: the broker's URL, unique queues that are deleted afterwards,
a publisher, and a way to cut our own connections from the server side.

The URL comes from KAT_TEST_RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/%2F).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from celery import Celery

RABBITMQ_URL = os.environ.get("KAT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def unique_queue_name(prefix: str = "kat-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def delete_queues(url: str, *names: str) -> None:
    """Delete queues (and their `.dead` queues); missing ones are fine."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for name in names:
            for queue in (name, f"{name}.dead"):
                channel = connection.channel()
                try:
                    channel.queue_delete(queue)
                except pika.exceptions.ChannelClosedByBroker:
                    pass
                else:
                    channel.close()
    finally:
        connection.close()


def close_connections(connection_name: str, reason: str = "test") -> int:
    """Close, from the server side, every connection whose client named itself `connection_name`.

    Only ours: `rabbitmqctl close_all_connections` would also cut other users of the broker.
    """
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        check=True, capture_output=True, text=True, timeout=30,
    )
    closed = 0
    for line in listed.stdout.splitlines():
        # e.g. <rabbit@host.1.2.0>\t[{"product","Pika ..."},...,{"connection_name","<name>"}]
        pid, _, properties = line.partition("\t")
        if f'{{"connection_name","{connection_name}"}}' in properties:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, reason],
                           check=True, capture_output=True, text=True, timeout=30)
            closed += 1
    return closed


class TestPublisher:
    """Publishes persistent JSON (or raw bytes) to a queue on the default exchange, in bulk."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()

    def declare(self, queue: str) -> None:
        self.channel.queue_declare(queue, durable=True)

    def publish(self, queue: str, body: dict[str, Any] | bytes, message_id: str | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.channel.basic_publish(
            exchange="", routing_key=queue, body=payload,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                            content_type="application/json", message_id=message_id),
        )

    def message_count(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, durable=True, passive=True).method.message_count)

    def get(self, queue: str) -> tuple[Any, bytes] | None:
        """One message from `queue` (acked), as (properties, body), or None when it is empty."""
        method, properties, body = self.channel.basic_get(queue, auto_ack=True)
        return None if method is None else (properties, body)

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).close()
    except pika.exceptions.AMQPError as error:
        pytest.fail(f"the integration lane needs RabbitMQ at {RABBITMQ_URL}: {error!r}")
    return RABBITMQ_URL


@pytest.fixture
def rabbit_queue(rabbitmq_url: str) -> Iterator[str]:
    """A fresh queue name; the queue and its `.dead` queue are deleted after the test."""
    name = unique_queue_name()
    yield name
    delete_queues(rabbitmq_url, name)


@pytest.fixture
def rabbit_publisher(rabbitmq_url: str) -> Iterator[TestPublisher]:
    publisher = TestPublisher(rabbitmq_url)
    yield publisher
    publisher.close()


def celery_app(broker_url: str) -> Celery:
    """A Celery app as the scheduler worker configures one, on `broker_url`, for a dispatcher under test."""
    app = Celery(f"kat-test-{uuid.uuid4().hex[:6]}", broker=broker_url)
    app.config_from_object("kat_scheduler.celery_defaults")
    return app


@pytest.fixture
def rabbit_app(rabbitmq_url: str) -> Iterator[Celery]:
    """celery_app on the machine's RabbitMQ, closed after the test."""
    app = celery_app(rabbitmq_url)
    yield app
    app.close()
