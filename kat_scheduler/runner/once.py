"""Run each task once, even when the broker hands it over twice.

A runner acknowledges a message only when its task has finished (acks late). If the broker goes away
in between (a RabbitMQ restart, a Redis broker's visibility timeout), the message comes back, possibly
while the first run is still going: Celery delivers at least once. So the reference runner keeps a mark
per task id in the scheduler's Redis: "running" while a run is going (kept alive by a heartbeat, so it
vanishes within MARK_SECONDS when its runner dies) and "done" for a day after it finished. A second
delivery waits while the mark says running: when it turns to done the delivery is skipped, when it
vanishes (the first runner died) the delivery runs the task. A failed run removes its mark, so a retry
runs. When Redis does not answer the runner runs the task anyway: at least once beats not at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kat_scheduler.config import Settings
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.queues import connect
from kat_scheduler.store import StoreClient, StoreUnavailable

logger = logging.getLogger(__name__)

MARK_SECONDS = 10  # a running mark outlives its runner by at most this
DONE_SECONDS = 86_400


class AlreadyRan(Exception):
    """This delivery's task was run to the end by another delivery."""


class RunOnce:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.redis_url
        self.base = "{" + f"{settings.key_prefix}:runner" + "}:once:"
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            self._client = StoreClient(connect(self.url, retries=1, timeout=2.0), "once-marks")
        return self._client

    @contextmanager
    def run(self, task_id: str) -> Iterator[None]:
        """The block runs the task; AlreadyRan instead when another delivery ran it to the end."""
        key = self.base + task_id
        try:
            self._take(key)
        except StoreUnavailable as error:
            logger.warning("task %s: cannot tell whether it runs elsewhere (%s); running it", task_id, error,
                           extra=task_fields(task_id))
            yield
            return
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._beat, args=(key, stop), daemon=True)
        heartbeat.start()
        try:
            yield
        except BaseException:
            stop.set()
            self._quietly(lambda client: client.delete(key))
            raise
        stop.set()
        self._quietly(lambda client: client.set(key, "done", ex=DONE_SECONDS))

    def _take(self, key: str) -> None:
        stop = threading.Event()
        while not self._redis().set(key, "running", nx=True, ex=MARK_SECONDS):
            if self._redis().get(key) == "done":
                raise AlreadyRan(key)
            stop.wait(0.2)  # another delivery is running it: see how that ends

    def _beat(self, key: str, stop: threading.Event) -> None:
        while not stop.wait(MARK_SECONDS / 3):
            self._quietly(lambda client: client.expire(key, MARK_SECONDS, xx=True))

    def _quietly(self, change: Any) -> None:
        try:
            change(self._redis())
        except StoreUnavailable as error:
            logger.warning("runner: could not update a run's mark: %s", error)
