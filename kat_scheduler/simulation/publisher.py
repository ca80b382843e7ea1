"""Where the simulated Octopoes and Bytes publish their events: RabbitMQ, or the in-process bus.

Both publish exactly what OpenKAT does: a JSON body on the default exchange with the queue name as
routing key, the queue durable and declared with no arguments (contracts §4).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Protocol

import pika
import pika.exceptions

from kat_scheduler.connectors.listeners.bus import InProcessBus

logger = logging.getLogger(__name__)


class EventPublisher(Protocol):
    def publish(self, queue_name: str, body: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class RabbitPublisher:
    """Persistent JSON messages through one pika connection; thread-safe, reconnects once on a loss."""

    def __init__(self, queue_uri: str, confirm: bool = False) -> None:
        self.queue_uri = queue_uri
        self.confirm = confirm
        self.published = 0
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._declared: set[str] = set()

    def publish(self, queue_name: str, body: dict[str, Any] | bytes) -> None:
        """Publish `body` (a dict as JSON; bytes as they are, for malformed-message tests)."""
        payload = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        with self._lock:
            try:
                self._publish(queue_name, payload)
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelClosed) as error:
                logger.warning("publishing to %s failed (%r); reconnecting once", queue_name, error)
                self._reset()
                self._publish(queue_name, payload)
            self.published += 1

    def close(self) -> None:
        with self._lock:
            self._reset()

    def __enter__(self) -> RabbitPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _publish(self, queue_name: str, payload: bytes) -> None:
        channel = self._open_channel()
        if queue_name not in self._declared:
            channel.queue_declare(queue_name, durable=True)
            self._declared.add(queue_name)
        channel.basic_publish(
            exchange="",
            routing_key=queue_name,
            body=payload,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                            content_type="application/json"),
            mandatory=self.confirm,  # a confirmed message must also have reached a queue
        )

    def _open_channel(self) -> Any:
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.queue_uri))
            self._channel = self._connection.channel()
            if self.confirm:
                self._channel.confirm_delivery()
            self._declared.clear()
        return self._channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                logger.debug("closing the publisher's connection failed", exc_info=True)


__all__ = ["EventPublisher", "InProcessBus", "RabbitPublisher"]
