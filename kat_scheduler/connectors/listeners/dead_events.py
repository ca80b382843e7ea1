"""The events a listener gave up on: the RabbitMQ queue `<queue>.dead`, read, replayed and dropped.

A listener publishes an event it cannot handle to `<queue>.dead` with the reason in its headers
(listener.py). Here an operator looks at them and, once the cause is fixed (a wrong BYTES_PASSWORD, a
Katalogus that answered 4xx), sends them back to the queue they came from, or drops them.

Browsing takes the messages without acknowledging them and closes the channel, which gives every one
back to RabbitMQ in its place: looking changes nothing. An event is named by its message id when its
publisher set one, else by a hash of its body, so the same event keeps its name between two looks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

TIMEOUT_SECONDS = 5.0
BODY_PREVIEW = 300  # characters of the body a listing shows


@dataclass(frozen=True, slots=True)
class DeadEvent:
    """One dead-lettered event, as its headers tell it."""

    id: str
    queue: str  # the queue it came from and goes back to
    reason: str
    failures: int | None
    dead_lettered_at: str | None
    organisation: str | None
    body: str  # the start of the body, as text

    def to_document(self) -> dict[str, Any]:
        return {"id": self.id, "queue": self.queue, "reason": self.reason, "failures": self.failures,
                "dead_lettered_at": self.dead_lettered_at, "organisation": self.organisation, "body": self.body}


def event_id(properties: pika.BasicProperties, body: bytes) -> str:
    return properties.message_id or "sha256:" + hashlib.sha256(body).hexdigest()[:16]


def _organisation(body: bytes) -> str | None:
    """OpenKAT's events name their organisation as `client_id` (mutations) or `organization` (raw files)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    found = document.get("client_id") or document.get("organization")
    return str(found) if found is not None else None


def _dead_event(queue_name: str, properties: pika.BasicProperties, body: bytes) -> DeadEvent:
    headers = properties.headers or {}
    failures = headers.get("x-failures")
    return DeadEvent(
        id=event_id(properties, body),
        queue=str(headers.get("x-original-queue") or queue_name),
        reason=str(headers.get("x-dead-reason") or "no reason recorded"),
        failures=int(failures) if isinstance(failures, int) else None,
        dead_lettered_at=str(headers["x-dead-lettered-at"]) if "x-dead-lettered-at" in headers else None,
        organisation=_organisation(body),
        body=body[:BODY_PREVIEW].decode("utf-8", errors="replace"),
    )


class DeadEvents:
    """The dead letters of the listeners' queues, on one RabbitMQ."""

    def __init__(self, queue_uri: str, queue_names: list[str]) -> None:
        self.queue_uri = queue_uri
        self.queue_names = queue_names

    @contextmanager
    def _channel(self) -> Iterator[BlockingChannel]:
        parameters = pika.URLParameters(self.queue_uri)
        parameters.socket_timeout = parameters.stack_timeout = TIMEOUT_SECONDS
        parameters.blocked_connection_timeout = TIMEOUT_SECONDS
        parameters.connection_attempts = 1
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            yield channel
        finally:
            connection.close()  # what was taken and not acknowledged goes back to its queue, in place

    def _taken(self, channel: BlockingChannel, queue_name: str, limit: int
               ) -> Iterator[tuple[int, pika.BasicProperties, bytes]]:
        """Up to `limit` messages of `<queue>.dead`, taken unacknowledged."""
        channel.queue_declare(f"{queue_name}.dead", durable=True)
        for _ in range(limit):
            method, properties, body = channel.basic_get(f"{queue_name}.dead", auto_ack=False)
            if method is None:
                return
            yield method.delivery_tag, properties, body

    def peek(self, limit: int = 100) -> list[DeadEvent]:
        """The oldest `limit` dead events of each queue; they all stay where they are."""
        found: list[DeadEvent] = []
        with self._channel() as channel:
            for queue_name in self.queue_names:
                found += [_dead_event(queue_name, properties, body)
                          for _, properties, body in self._taken(channel, queue_name, limit)]
        return found

    def replay(self, wanted: str, limit: int = 10_000) -> list[DeadEvent]:
        """Publish the dead event named `wanted` ("all": every one) to the queue it came from, with a
        header counting its replays, and take it off the dead queue. Returns what was replayed."""
        return self._take(wanted, limit, replay=True)

    def drop(self, wanted: str, limit: int = 10_000) -> list[DeadEvent]:
        """Take the dead event named `wanted` ("all": every one) off its dead queue for good."""
        return self._take(wanted, limit, replay=False)

    def _take(self, wanted: str, limit: int, replay: bool) -> list[DeadEvent]:
        done: list[DeadEvent] = []
        with self._channel() as channel:
            for queue_name in self.queue_names:
                for tag, properties, body in self._taken(channel, queue_name, limit):
                    event = _dead_event(queue_name, properties, body)
                    if wanted not in ("all", event.id):
                        continue
                    if replay:
                        channel.basic_publish(exchange="", routing_key=event.queue, body=body,
                                              properties=_replayed(properties), mandatory=True)
                    channel.basic_ack(tag)  # after the confirmed publish: a failure leaves it dead
                    done.append(event)
        return done


def _replayed(properties: pika.BasicProperties) -> pika.BasicProperties:
    headers = {name: value for name, value in (properties.headers or {}).items()
               if name not in ("x-dead-reason", "x-failures", "x-dead-lettered-at", "x-original-queue")}
    headers["x-replays"] = int(headers.get("x-replays") or 0) + 1
    return pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                content_type=properties.content_type or "application/json",
                                message_id=properties.message_id, headers=headers)
