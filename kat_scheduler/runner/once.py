"""Run each task once, even when the broker hands it over twice.

A runner acknowledges a message only when its task has finished (acks late). If the broker goes away
in between (a RabbitMQ restart, a Redis broker's visibility timeout), the acknowledgement is lost and
the message comes back: Celery delivers at least once. The reference runner remembers for a day which
task ids it finished, in the scheduler's Redis, and skips a task it already ran. When Redis does not
answer it runs the task anyway: at least once is better than not at all.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from kat_scheduler.config import Settings
from kat_scheduler.queues import connect
from kat_scheduler.queues.errors import UNAVAILABLE

logger = logging.getLogger(__name__)

REMEMBER_SECONDS = 86_400


class FinishedTasks:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.redis_url
        self.base = "{" + f"{settings.key_prefix}:runner" + "}:done:"
        self._client: Any = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self.url, retries=1, timeout=2.0)
        return self._client

    def ran(self, task_id: str) -> bool:
        try:
            return bool(self._redis().exists(self.base + task_id))
        except UNAVAILABLE as error:
            logger.warning("task %s: cannot tell whether it ran before (%s); running it", task_id, error)
            return False

    def finished(self, task_id: str) -> None:
        try:
            self._redis().set(self.base + task_id, 1, ex=REMEMBER_SECONDS)
        except UNAVAILABLE as error:
            logger.warning("task %s: could not remember it ran (%s)", task_id, error)
