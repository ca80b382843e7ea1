"""A RabbitMQ consumer that hands validated events to a handler and never loses one.

Policy, in the order a message meets it:

- The queue is declared durable with no arguments, exactly as Octopoes and Bytes declare it
  (contracts §4); anything else is refused with PRECONDITION_FAILED.
- Threads: pika's I/O loop runs on the thread that called `run()`; the handler runs on one worker
  thread of the listener, in delivery order. The I/O loop keeps heartbeats going however slow the
  handler is; the worker hands its verdicts back with `connection.add_callback_threadsafe`, coalesced
  so that one wake-up acknowledges a whole batch (consecutive acks become one `multiple=True` ack).
- With a `batch_handler`, the worker takes what has arrived (up to `batch_size`) and hands the
  well-formed messages over at once, so a burst costs one round of lookups instead of one per
  message; if the batch handler raises, each message is tried alone with `handler`.
- A message is acked only after the handler returned. A handler exception nacks it with requeue;
  once it has failed `max_redeliveries + 1` times (see `redeliveries` for how that is counted and
  its limits) it is published to `<queue>.dead` with the reason in its headers, then acked.
- A malformed message (not JSON, wrong shape) gets one log line with the reason and goes to
  `<queue>.dead` at once; the next message is handled as usual.
- A lost connection (broker restart, `rabbitmqctl close_all_connections`) is re-established with
  exponential backoff. RabbitMQ requeues what was unacked, so nothing is lost, but a message the
  handler was busy with at the cut (or had handled but not yet acked) is delivered again: handlers
  must be idempotent.
- `stop()` (any thread, any number of times) stops consuming, lets the handler finish the message it
  is on and acks it, leaves the rest unacked for RabbitMQ to requeue, and makes `run()` return.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

import pika
import pika.exceptions
from pydantic import BaseModel

from kat_scheduler.connectors.listeners.decoding import (
    MalformedMessage,
    decode,
    organisation_of,
    peek_organisation,
)
from kat_scheduler.connectors.listeners.redeliveries import FailureCounter, message_key
from kat_scheduler.queues.errors import redacted_url

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# What ends a connection: broker gone, connection or channel closed, socket errors.
CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)
SUPERVISE_SECONDS = 1.0  # how often the I/O loop looks whether the worker thread is still there


class _Verdict(Enum):
    ACK = "ack"
    REQUEUE = "requeue"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class _Delivery:
    generation: int
    tag: int
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivery: _Delivery
    verdict: _Verdict
    reason: str = ""
    failures: int = 0


class Listener(Generic[M]):
    """Consume `queue_name`, validate each body as `model`, call `handler(message)`; see the module."""

    def __init__(
        self,
        queue_uri: str,
        queue_name: str,
        model: type[M],
        handler: Callable[[M], object],
        prefetch_count: int = 100,
        max_redeliveries: int = 3,
        *,
        reconnect_backoff: float = 0.2,
        max_reconnect_backoff: float = 10.0,
        stop_timeout: float = 30.0,
        connection_name: str | None = None,
        batch_handler: Callable[[list[M]], object] | None = None,
        batch_size: int = 100,
    ) -> None:
        self.queue_uri = queue_uri
        self.queue_name = queue_name
        self.dead_queue = f"{queue_name}.dead"
        self.model = model
        self.handler = handler
        self.batch_handler = batch_handler
        self.batch_size = batch_size if batch_handler is not None else 1
        self.prefetch_count = prefetch_count
        self.max_redeliveries = max_redeliveries
        self.reconnect_backoff = reconnect_backoff
        self.max_reconnect_backoff = max_reconnect_backoff
        self.stop_timeout = stop_timeout
        self.connection_name = connection_name or f"kat_scheduler {queue_name}"

        self.handled = 0  # handler returned
        self.dead_lettered = 0
        self.connections = 0  # successful (re)connections
        self.connection_attempts = 0

        self._stopping = threading.Event()
        self._connection_lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._dead_channel: Any = None
        self._generation = 0  # one per connection; deliveries of an older one are RabbitMQ's again
        self._handling_generation = 0  # what the worker may still start on; -1 once stopping

        self._inbox: queue.SimpleQueue[_Delivery | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._failures = FailureCounter()
        self._outcome_lock = threading.Lock()
        self._outcomes: list[_Outcome] = []
        self._flush_scheduled = False

    # -- lifecycle -------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until `stop()`; reconnects with backoff whenever the connection is lost."""
        self._start_worker()
        delay = self.reconnect_backoff
        try:
            while not self._stopping.is_set():
                connected_before = self.connections
                try:
                    self._consume()
                except CONNECTION_ERRORS as error:
                    if self._stopping.is_set():
                        break
                    if self.connections > connected_before:
                        delay = self.reconnect_backoff
                    logger.warning("%s: connection to %s lost or refused (%r); reconnecting in %.1fs",
                                   self.queue_name, redacted_url(self.queue_uri), error, delay)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self.max_reconnect_backoff)
        finally:
            self._stop_worker()
            logger.info("%s: listener stopped (%d handled, %d dead-lettered)",
                        self.queue_name, self.handled, self.dead_lettered)

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._work, name=f"listener:{self.queue_name}", daemon=True)
        self._worker.start()

    def _supervise_worker(self) -> None:
        """Start the worker again should it ever have ended (it is not meant to: see `_judge`)."""
        worker = self._worker
        if worker is not None and not worker.is_alive() and not self._stopping.is_set():
            logger.error("%s: the handler thread ended; starting it again", self.queue_name)
            self._start_worker()

    def stop(self) -> None:
        """Ask `run()` to finish; safe from any thread, any number of times, before or during run."""
        self._stopping.set()
        with self._connection_lock:
            connection = self._connection
            if connection is None:
                return
            # Wake the I/O loop so it sees the flag; if the connection is already closed, run() is
            # reconnecting and sees it there.
            with contextlib.suppress(*CONNECTION_ERRORS):
                connection.add_callback_threadsafe(lambda: None)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the I/O loop (the thread that called run) -------------------------------------------------

    def _consume(self) -> None:
        parameters = pika.URLParameters(self.queue_uri)
        parameters.client_properties = {"connection_name": self.connection_name}
        parameters.connection_attempts = 1
        self.connection_attempts += 1
        connection = pika.BlockingConnection(parameters)
        with self._connection_lock, self._outcome_lock:
            self._connection = connection
            self._generation += 1
            self._handling_generation = self._generation
            self._outcomes = []
            self._flush_scheduled = False
        try:
            self._channel = connection.channel()
            self._channel.basic_qos(prefetch_count=self.prefetch_count)
            self._channel.queue_declare(self.queue_name, durable=True)
            self._dead_channel = connection.channel()
            self._dead_channel.confirm_delivery()
            self._dead_channel.queue_declare(self.dead_queue, durable=True)
            consumer_tag = self._channel.basic_consume(self.queue_name, self._on_message, auto_ack=False)
            self.connections += 1
            logger.info("%s: consuming from %s (prefetch %d)",
                        self.queue_name, redacted_url(self.queue_uri), self.prefetch_count)
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=SUPERVISE_SECONDS)
                self._supervise_worker()
            self._finish_in_flight(connection, consumer_tag)
        finally:
            with self._connection_lock:
                self._connection = None
            if connection.is_open:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    connection.close()

    def _on_message(self, _channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        delivery = _Delivery(self._generation, method.delivery_tag, method.redelivered, properties, body)
        self._inbox.put(delivery)

    def _finish_in_flight(self, connection: pika.BlockingConnection, consumer_tag: str) -> None:
        """On stop: let the handler finish its message and ack it; queued ones go back to RabbitMQ.

        The I/O loop keeps running while we wait, so heartbeats (and the verdict) still go out.
        """
        self._handling_generation = -1
        self._channel.basic_cancel(consumer_tag)
        worker, self._worker = self._worker, None
        if worker is not None:
            self._inbox.put(None)
            deadline = time.monotonic() + self.stop_timeout
            while worker.is_alive() and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.05)
            if worker.is_alive():
                logger.error("%s: handler still busy after %.0fs; leaving its message to RabbitMQ",
                             self.queue_name, self.stop_timeout)
        self._flush()

    def _flush(self) -> None:
        """Send the worker's verdicts, in delivery order; runs on the I/O loop's thread."""
        with self._outcome_lock:
            batch, self._outcomes = self._outcomes, []
            self._flush_scheduled = False
        last_ack: int | None = None
        for outcome in batch:
            delivery = outcome.delivery
            if delivery.generation != self._generation:
                continue  # from a closed connection: RabbitMQ redelivers it
            if outcome.verdict is _Verdict.ACK:
                last_ack = delivery.tag
                continue
            if last_ack is not None:
                self._channel.basic_ack(last_ack, multiple=True)
                last_ack = None
            if outcome.verdict is _Verdict.REQUEUE:
                self._channel.basic_nack(delivery.tag, requeue=True)
            else:
                self._publish_dead(outcome)
                self._channel.basic_ack(delivery.tag)
        if last_ack is not None:
            # Verdicts arrive in delivery order, so every delivery up to last_ack has had its own.
            self._channel.basic_ack(last_ack, multiple=True)

    def _publish_dead(self, outcome: _Outcome) -> None:
        properties = outcome.delivery.properties
        headers = dict(properties.headers or {})
        headers.update({
            "x-dead-reason": outcome.reason[:1000],
            "x-original-queue": self.queue_name,
            "x-failures": outcome.failures,
            "x-dead-lettered-at": datetime.now(UTC).isoformat(),
        })
        self._dead_channel.basic_publish(
            exchange="",
            routing_key=self.dead_queue,
            body=outcome.delivery.body,
            properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent,
                content_type=properties.content_type or "application/json",
                message_id=properties.message_id,
                headers=headers,
            ),
        )
        self.dead_lettered += 1

    # -- the worker thread -----------------------------------------------------------------------

    def _work(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._inbox.get()]
            while batch[-1] is not None and len(batch) < self.batch_size:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                stopping = True
            # Deliveries of a connection that is gone (or of a stopping listener) are RabbitMQ's again.
            current = [d for d in batch if d is not None and d.generation == self._handling_generation]
            if len(current) > 1:
                outcomes = self._judge_batch(current)
            else:
                outcomes = [self._judge(delivery) for delivery in current]
            for outcome in outcomes:
                self._post(outcome)

    def _judge_batch(self, deliveries: list[_Delivery]) -> list[_Outcome]:
        """Hand the well-formed messages of a batch to the batch handler at once; if it fails, every
        message gets its own try with the single handler, so one bad message costs only itself."""
        assert self.batch_handler is not None
        messages: dict[int, M] = {}
        outcomes: dict[int, _Outcome] = {}
        for position, delivery in enumerate(deliveries):
            try:
                messages[position] = decode(self.model, delivery.body)
            except Exception:  # malformed, or worse: its own try says which and dead-letters it
                outcomes[position] = self._judge(delivery)
        try:
            self.batch_handler(list(messages.values()))
        except Exception as error:
            logger.warning("%s: a batch of %d failed (%r); handling its messages one by one",
                           self.queue_name, len(messages), error)
            outcomes.update({position: self._judge(deliveries[position]) for position in messages})
        else:
            for position in messages:
                outcomes[position] = self._handled(deliveries[position], messages[position])
        return [outcomes[position] for position in range(len(deliveries))]

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None or not worker.is_alive():
            return
        self._handling_generation = -1
        self._inbox.put(None)
        worker.join(self.stop_timeout)
        if worker.is_alive():
            logger.error("%s: handler still busy after %.0fs; leaving its message to RabbitMQ",
                         self.queue_name, self.stop_timeout)

    def _judge(self, delivery: _Delivery) -> _Outcome:
        """Decode and handle one delivery; the verdict says what to tell RabbitMQ. Whatever the delivery
        holds, there is a verdict: a failure in reaching one dead-letters the message with the reason."""
        try:
            try:
                message = decode(self.model, delivery.body)
            except MalformedMessage as error:
                return self._malformed(delivery, error)
            try:
                self.handler(message)
            except Exception as error:
                return self._failed(delivery, message, error)
            return self._handled(delivery, message)
        except Exception as error:
            logger.exception("%s: a message could not be judged; dead-lettered to %s", self.queue_name,
                             self.dead_queue)
            return _Outcome(delivery, _Verdict.DEAD, f"could not be judged: {type(error).__name__}")

    def _malformed(self, delivery: _Delivery, error: MalformedMessage) -> _Outcome:
        logger.error("%s: malformed message from organisation %s dead-lettered to %s: %s",
                     self.queue_name, peek_organisation(delivery.body), self.dead_queue, error.reason)
        return _Outcome(delivery, _Verdict.DEAD, f"malformed: {error.reason}")

    def _handled(self, delivery: _Delivery, message: M) -> _Outcome:
        if delivery.redelivered:
            self._failures.forget(message_key(delivery.properties.message_id, delivery.body))
        self.handled += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: handled a message for organisation %s",
                         self.queue_name, organisation_of(message))
        return _Outcome(delivery, _Verdict.ACK)

    def _failed(self, delivery: _Delivery, message: M, error: Exception) -> _Outcome:
        key = message_key(delivery.properties.message_id, delivery.body)
        failures = self._failures.record_failure(key, delivery.redelivered)
        organisation = organisation_of(message)
        if failures <= self.max_redeliveries:
            logger.warning("%s: handler failed for organisation %s (failure %d of %d allowed), requeued: %r",
                           self.queue_name, organisation, failures, self.max_redeliveries + 1, error)
            return _Outcome(delivery, _Verdict.REQUEUE, failures=failures)
        self._failures.forget(key)
        logger.error("%s: handler failed %d times for organisation %s, dead-lettered to %s: %r",
                     self.queue_name, failures, organisation, self.dead_queue, error)
        return _Outcome(delivery, _Verdict.DEAD, f"handler failed {failures} times: {error!r}", failures)

    def _post(self, outcome: _Outcome) -> None:
        """Queue a verdict for the I/O loop; one wake-up per batch, not per message."""
        with self._outcome_lock:
            self._outcomes.append(outcome)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
            connection = self._connection
        if connection is None:
            return
        # If the connection is going, its deliveries come back after the reconnect.
        with contextlib.suppress(*CONNECTION_ERRORS):
            connection.add_callback_threadsafe(self._flush)
