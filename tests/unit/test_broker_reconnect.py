"""The workers and the dispatcher's event receiver reconnect on our schedules, not kombu's 2..30 s."""

from __future__ import annotations

from typing import Any

from celery import Celery

from kat_scheduler.broker_reconnect import EVENTS_RECONNECT, WORKER_CONSUMER, WORKER_RECONNECT, QuickReconnectConsumer
from kat_scheduler.celery_app import app as scheduler_app
from kat_scheduler.config import Settings
from kat_scheduler.runner.worker import create_runner_app


class RecordingConnection:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def ensure_connection(self, *args: Any, **kwargs: Any) -> RecordingConnection:
        self.calls.append(kwargs)
        return self

    def as_uri(self) -> str:
        return "memory://"


def test_both_worker_apps_use_the_quick_consumer() -> None:
    assert scheduler_app.conf.worker_consumer == WORKER_CONSUMER
    assert create_runner_app(Settings(), handler=lambda kind, payload: None,
                             broker_url="memory://").conf.worker_consumer == WORKER_CONSUMER


def test_the_consumer_retries_on_the_worker_schedule() -> None:
    consumer = QuickReconnectConsumer.__new__(QuickReconnectConsumer)  # only ensure_connected is exercised
    consumer.app = Celery("probe", broker="memory://")
    consumer.first_connection_attempt = False
    consumer.broker_connection_retry_attempt = 0
    connection = RecordingConnection()
    assert consumer.ensure_connected(connection) is connection
    assert connection.calls and connection.calls[0]["interval_max"] == WORKER_RECONNECT["interval_max"]
    assert connection.calls[0]["interval_start"] == WORKER_RECONNECT["interval_start"]
    assert "callback" in connection.calls[0]  # Celery's own arguments still reach kombu


def test_the_schedules_are_short() -> None:
    assert WORKER_RECONNECT["interval_max"] <= 5 and EVENTS_RECONNECT["interval_max"] <= 1
