"""The demo's "what just happened": short lines in plain words, each with the second of the run it
happened in. The script writes what it does; the narrator (story.py) writes what it saw the scheduler
do, read from Redis."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    at: float  # seconds since the run started
    text: str

    def line(self) -> str:
        return f"{self.at:6.1f} s  {self.text}"


class Journal:
    """Lines in the order they were written; safe to write from any thread."""

    def __init__(self, started_ms: int) -> None:
        self.started_ms = started_ms
        self._entries: list[Entry] = []
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.time() - self.started_ms / 1000

    def add(self, text: str, at_ms: int | None = None) -> Entry:
        """Write a line; `at_ms` (wall clock) when Redis says when it happened, else now."""
        at = self.elapsed() if at_ms is None else (at_ms - self.started_ms) / 1000
        entry = Entry(max(0.0, at), text)
        with self._lock:
            self._entries.append(entry)
        return entry

    def since(self, count: int) -> list[Entry]:
        """The lines after the first `count`, in the order they happened."""
        with self._lock:
            return sorted(self._entries[count:], key=lambda entry: entry.at)

    def entries(self) -> list[Entry]:
        """Every line, in the order they happened."""
        return self.since(0)

    def last(self, count: int) -> list[Entry]:
        with self._lock:
            return sorted(self._entries, key=lambda entry: entry.at)[-count:]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
