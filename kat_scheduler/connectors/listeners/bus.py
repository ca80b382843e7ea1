"""An in-process stand-in for RabbitMQ, for the demo and tests when no broker answers.

It delivers like a `Listener` does: the body goes through JSON and model validation, the handler
gets the validated model, a handler that keeps raising is retried `max_redeliveries` times and then
dead-lettered, and a malformed body is dead-lettered at once. Delivery is synchronous on the
publisher's thread, so a test sees the handler's effect as soon as `publish` returns. Messages
published before anyone subscribes wait in the queue, as they would in a durable RabbitMQ queue.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kat_scheduler.connectors.listeners.decoding import (
    MalformedMessage,
    decode,
    organisation_of,
    peek_organisation,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    body: bytes
    reason: str


@dataclass(frozen=True)
class _Subscription:
    model: type[BaseModel]
    handler: Callable[[Any], object]
    max_redeliveries: int


class InProcessBus:
    """Queues by name, each with at most one subscriber; implements the `EventPublisher` shape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, _Subscription] = {}
        self._waiting: defaultdict[str, list[bytes]] = defaultdict(list)
        self.dead: list[DeadLetter] = []
        self.published: defaultdict[str, int] = defaultdict(int)

    def subscribe(
        self,
        queue_name: str,
        model: type[BaseModel],
        handler: Callable[[Any], object],
        max_redeliveries: int = 3,
    ) -> None:
        """Deliver `queue_name`'s messages to `handler`, starting with those already waiting."""
        with self._lock:
            self._subscriptions[queue_name] = _Subscription(model, handler, max_redeliveries)
            waiting = self._waiting.pop(queue_name, [])
        for body in waiting:
            self._deliver(queue_name, body)

    def unsubscribe(self, queue_name: str) -> None:
        with self._lock:
            self._subscriptions.pop(queue_name, None)

    def publish(self, queue_name: str, body: dict[str, Any] | bytes | str) -> None:
        """Publish a message; a dict is sent as JSON, bytes or str as they are (for malformed tests)."""
        raw = body.encode() if isinstance(body, str) else body
        if isinstance(raw, dict):
            raw = json.dumps(raw, default=str).encode()
        with self._lock:
            self.published[queue_name] += 1
            if queue_name not in self._subscriptions:
                self._waiting[queue_name].append(raw)
                return
        self._deliver(queue_name, raw)

    def waiting(self, queue_name: str) -> int:
        """Messages published to a queue nobody has subscribed to yet."""
        with self._lock:
            return len(self._waiting.get(queue_name, []))

    def close(self) -> None:
        """Nothing to release; here so the bus fits where a RabbitPublisher fits."""

    def _deliver(self, queue_name: str, body: bytes) -> None:
        with self._lock:
            subscription = self._subscriptions.get(queue_name)
        if subscription is None:
            with self._lock:
                self._waiting[queue_name].append(body)
            return
        try:
            message = decode(subscription.model, body)
        except MalformedMessage as error:
            logger.error("%s: malformed message dead-lettered (organisation %s): %s",
                         queue_name, peek_organisation(body), error.reason)
            self._dead_letter(queue_name, body, f"malformed: {error.reason}")
            return
        organisation = organisation_of(message)
        attempts = 1 + subscription.max_redeliveries
        for attempt in range(1, attempts + 1):
            try:
                subscription.handler(message)
                return
            except Exception as error:
                logger.warning("%s: handler failed for organisation %s (attempt %d of %d): %r",
                               queue_name, organisation, attempt, attempts, error)
                reason = f"handler failed {attempt} times: {error!r}"
        self._dead_letter(queue_name, body, reason)

    def _dead_letter(self, queue_name: str, body: bytes, reason: str) -> None:
        with self._lock:
            self.dead.append(DeadLetter(queue_name, body, reason))
