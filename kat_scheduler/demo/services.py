"""The demo's Redis and event bus: the real servers when they answer, embedded stand-ins when not.

Without Redis, an embedded Redis-compatible server (fakeredis, over TCP on a free loopback port)
carries our queues and Celery's messages, so Flower can still be pointed at it. Without RabbitMQ,
OpenKAT's events go through an in-process bus.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pika
import pika.exceptions

from kat_scheduler.config import Settings
from kat_scheduler.connectors.listeners import InProcessBus
from kat_scheduler.queues import connect
from kat_scheduler.queues.errors import redacted_url
from kat_scheduler.simulation import EventPublisher, RabbitPublisher
from kat_scheduler.store import StoreClient, StoreUnavailable


@dataclass
class DemoServices:
    redis_url: str
    redis_label: str
    publisher: EventPublisher
    bus: InProcessBus | None  # set when the events go in-process
    events_label: str


def redis_answers(url: str) -> bool:
    try:
        return bool(StoreClient(connect(url, retries=0, timeout=1.0), "demo").ping())
    except StoreUnavailable:
        return False


def rabbitmq_answers(url: str) -> bool:
    try:
        parameters = pika.URLParameters(url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = 1.0
        pika.BlockingConnection(parameters).close()
        return True
    except (pika.exceptions.AMQPError, OSError):
        return False


def delete_rabbitmq_queues(url: str, names: list[str]) -> None:
    """Remove the demo's queues (and their dead-letter queues) from a real RabbitMQ."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in names:
            for queue in (name, f"{name}.dead"):
                channel.queue_delete(queue)
    finally:
        connection.close()


@contextmanager
def embedded_redis() -> Iterator[str]:
    """A Redis-compatible server on a free loopback port, for as long as the block runs."""
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    # A connection blocked in a command with a timeout (a broker's BRPOP) ends only when that runs out: the
    # demo does not wait for those on its way out.
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, name="embedded-redis", daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def demo_services(settings: Settings, embedded: bool) -> Iterator[DemoServices]:
    """Real Redis and RabbitMQ when they answer (and `embedded` is not forced), else stand-ins."""
    with _redis(settings, embedded) as (url, label):
        if not embedded and rabbitmq_answers(settings.queue_uri):
            publisher = RabbitPublisher(settings.queue_uri)
            try:
                yield DemoServices(url, label, publisher, None, f"the RabbitMQ at {redacted_url(settings.queue_uri)}")
            finally:
                publisher.close()
        else:
            bus = InProcessBus()
            yield DemoServices(url, label, bus, bus, "an in-process event bus (no RabbitMQ answered)")


@contextmanager
def _redis(settings: Settings, embedded: bool) -> Iterator[tuple[str, str]]:
    if not embedded and redis_answers(settings.redis_url):
        yield settings.redis_url, f"the Redis at {redacted_url(settings.redis_url)}"
        return
    with embedded_redis() as url:
        yield url, f"an embedded Redis-compatible server at {url} (no Redis answered)"
