"""A small thread-safe TTL cache that loads each missing key once, however many threads ask.

Every scan-profile mutation asks Katalogus which boefjes consume the OOI's type; a burst of a
thousand events for one organisation must cost one HTTP call, not a thousand, even when several
threads miss the same key at the same moment (one loads, the others wait for its answer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Values live `ttl` seconds; `ttl <= 0` disables caching. Failed loads are not cached."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._loading: dict[Hashable, threading.Lock] = {}

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        if self.ttl <= 0:
            return load()
        value = self._fresh(key)
        if value is not None:
            return value[0]
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            value = self._fresh(key)  # another thread may have loaded it while we waited
            if value is not None:
                return value[0]
            loaded = load()
            with self._lock:
                self._entries[key] = (self._clock() + self.ttl, loaded)
                self._loading.pop(key, None)
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _fresh(self, key: Hashable) -> tuple[V] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            return (entry[1],)
