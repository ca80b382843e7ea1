"""Wake-ups for the dispatch loop: the queue script publishes on `<queue>:wake` when work appears or a
slot frees (see queue.lua), and the lifecycle wakes the loop itself when it frees a slot.

A pub/sub subscription means pushers need not know about dispatchers, and every dispatcher hears
every signal. The loop also wakes on its own every `fallback` seconds, for anything a signal missed
(a dropped subscription, a slot freed by a process that does not publish).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import redis

from kat_scheduler.store import StoreClient, StoreUnavailable

logger = logging.getLogger(__name__)


class Wakeup:
    """A threading.Event the dispatch loop waits on, set by a pub/sub listener thread."""

    def __init__(self, client: redis.Redis, channels: Sequence[str], poll_seconds: float = 1.0) -> None:
        self.client = StoreClient(client, "dispatch wake-ups")
        self.channels = list(channels)
        self.poll_seconds = poll_seconds  # how soon the listener notices stop()
        self.signalled = threading.Event()
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="kat-dispatch-wakeup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        """Ask the listener to stop, without waiting for it."""
        self._stopping.set()

    def stop(self) -> None:
        self.halt()
        if self._thread.is_alive():
            self._thread.join(self.poll_seconds + 5)

    def set(self) -> None:
        self.signalled.set()

    def wait(self, timeout: float) -> bool:
        """Block until signalled (answers True) or `timeout` seconds pass; the signal is consumed."""
        woken = self.signalled.wait(timeout)
        self.signalled.clear()
        return woken

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            pubsub = self.client.raw.pubsub(ignore_subscribe_messages=True)
            try:
                with self.client.guard():
                    pubsub.subscribe(*self.channels)
                    self.listening.set()
                    self.signalled.set()  # anything published while we were not subscribed
                    backoff = 0.1
                    while not self._stopping.is_set():
                        if pubsub.get_message(timeout=self.poll_seconds) is not None:
                            self.signalled.set()
            except StoreUnavailable as error:
                self.listening.clear()
                logger.warning("dispatch wake-ups: Redis subscription lost (%r); retrying in %.1f s",
                               error, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                pubsub.close()
