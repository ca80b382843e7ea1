"""How soon a lost broker connection is tried again.

Celery's worker consumer and kombu's ConsumerMixin (which Celery's event receiver is) retry a lost
connection after 2, 4, 6 ... seconds, up to 30, with no setting to change it: after a RabbitMQ
restart a worker can sit idle for many seconds with the broker back. Two schedules replace it:

- workers (the scheduler workers and the reference runner) try again after 0.5, 1.5, 2.5 ... up to
  5 s between tries;
- the dispatcher's event receiver tries every 0.2 s up to 1 s, so that it listens again before the
  runners flush the task events they held while the broker was away. Events go to the event queues
  that exist when they are sent, and a restart takes the receivers' queues with it: an event sent
  before a dispatcher has declared its queue again is lost, and its task then waits out the
  lost-runner grace.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer

WORKER_RECONNECT: dict[str, float] = {"interval_start": 0.5, "interval_step": 1.0, "interval_max": 5.0}
EVENTS_RECONNECT: dict[str, float] = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 1.0}

# The Celery setting that makes a worker use QuickReconnectConsumer.
WORKER_CONSUMER = f"{__name__}:QuickReconnectConsumer"


class QuickReconnectConsumer(Consumer):
    """Celery's worker consumer, reconnecting on WORKER_RECONNECT's schedule."""

    def ensure_connected(self, conn: Any) -> Any:
        # Celery's method decides whether to retry at all and logs each try; only the intervals of the
        # call it makes differ.
        conn.ensure_connection = functools.partial(conn.ensure_connection, **WORKER_RECONNECT)
        return super().ensure_connected(conn)
