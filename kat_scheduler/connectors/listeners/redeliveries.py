"""How often a message's handler has failed, so a poison message ends in the dead-letter queue.

RabbitMQ's classic queues do not count redeliveries for us (only the `redelivered` flag), and we may
not declare OpenKAT's queues with a delivery limit (contracts §4). So the listener counts failures
itself, in memory:

- key: the message's `message_id` property when the publisher set one, else a SHA-1 of the body;
- a delivery without the `redelivered` flag is a first delivery, so its count starts again at zero
  (an identical message published later does not inherit an old message's failures);
- the table keeps the most recent `capacity` keys and forgets the oldest beyond that.

Limits: the counts live in one process, so after a restart (or with several listeners on one queue)
a poison message can be tried up to `max_redeliveries + 1` times per process before it is
dead-lettered; two identical bodies without a message id share one count while both are redelivered.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict


def message_key(message_id: str | None, body: bytes) -> str:
    return f"id:{message_id}" if message_id else f"sha1:{hashlib.sha1(body).hexdigest()}"


class FailureCounter:
    """Handler failures per message key; not thread-safe (the listener's worker thread owns it)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._failures: OrderedDict[str, int] = OrderedDict()

    def record_failure(self, key: str, redelivered: bool) -> int:
        """Count one more failure and answer the total for this message so far."""
        failures = (self._failures.pop(key, 0) if redelivered else 0) + 1
        self._failures[key] = failures
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)
        return failures

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
