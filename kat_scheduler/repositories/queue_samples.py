"""A queue's recent past, for the dashboard's charts: every SAMPLE_EVERY_SECONDS the beat leader notes
how much is queued and in flight and how many tasks have ended so far; the last hour of notes is kept.

One list per queue, "{<prefix>:<kind>}:samples", newest first: "<ms>:<queued>:<in flight>:<ended>",
trimmed to KEPT entries as it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from kat_scheduler.store import StoreClient

SAMPLE_EVERY_SECONDS = 10
KEPT = 3600 // SAMPLE_EVERY_SECONDS + 1  # an hour of them


@dataclass(frozen=True, slots=True)
class QueueSample:
    at_ms: int
    queued: int
    in_flight: int
    ended: int  # completed and failed since the queue began: the difference between samples is the throughput

    def encode(self) -> str:
        return f"{self.at_ms}:{self.queued}:{self.in_flight}:{self.ended}"

    @classmethod
    def decode(cls, stored: str) -> QueueSample:
        at, queued, in_flight, ended = stored.split(":")
        return cls(int(at), int(queued), int(in_flight), int(ended))


class QueueSamples:
    def __init__(self, client: redis.Redis, prefix: str, kind: str) -> None:
        self.client: Any = StoreClient(client, f"samples {kind}")
        self.key = "{" + f"{prefix}:{kind}" + "}:samples"

    def add(self, sample: QueueSample) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(self.key, sample.encode())
        pipe.ltrim(self.key, 0, KEPT - 1)
        pipe.execute()

    def last_hour(self, now_ms: int) -> list[QueueSample]:
        """Oldest first."""
        samples = [QueueSample.decode(stored) for stored in self.client.lrange(self.key, 0, KEPT - 1)]
        return [sample for sample in reversed(samples) if now_ms - sample.at_ms <= 3_600_000]
