"""The application context: settings, the Redis client, the queues and the service clients, built once
per process and handed to whatever needs them (schedulers, the beat, the dispatcher, the API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

from kat_scheduler.config import Settings, load_settings
from kat_scheduler.connectors.services import BytesClient, KatalogusClient, OctopoesClient
from kat_scheduler.kinds import KINDS
from kat_scheduler.queues import PriorityQueue, connect
from kat_scheduler.queues.priority_queue import wall_clock_ms
from kat_scheduler.repositories import ScheduleRepository


@dataclass
class AppContext:
    settings: Settings
    redis: Redis
    katalogus: KatalogusClient
    octopoes: OctopoesClient
    bytes: BytesClient
    clock_ms: Callable[[], int] = wall_clock_ms
    queues: dict[str, PriorityQueue] = field(default_factory=dict)
    schedules: dict[str, ScheduleRepository] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in KINDS:  # every registered kind of work (kinds/)
            self.queues.setdefault(kind, self.make_queue(kind))
            self.schedules.setdefault(kind, ScheduleRepository(self.redis, self.settings.key_prefix, kind))

    @classmethod
    def create(
        cls,
        settings: Settings | None = None,
        *,
        redis_client: Redis | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> AppContext:
        settings = settings or load_settings()
        return cls(
            settings=settings,
            redis=redis_client if redis_client is not None else connect(settings.redis_url),
            katalogus=KatalogusClient.from_settings(settings),
            octopoes=OctopoesClient.from_settings(settings),
            bytes=BytesClient.from_settings(settings),
            clock_ms=clock_ms,
        )

    def make_queue(self, kind: str) -> PriorityQueue:
        s = self.settings
        return PriorityQueue(
            self.redis,
            kind,
            prefix=s.key_prefix,
            maxsize=s.pq_maxsize,
            lease_seconds=s.lease_seconds,
            max_attempts=s.max_attempts,
            retention_seconds=s.task_retention,
            filtered_claim_scan=s.filtered_claim_scan,
            dead_letter_retention_seconds=s.dead_letter_retention,
            keep_last_runs=KINDS[kind].ranking().uses_last_run,
            clock_ms=self.clock_ms,
        )

    @property
    def boefjes(self) -> PriorityQueue:
        return self.queues["boefje"]

    @property
    def normalizers(self) -> PriorityQueue:
        return self.queues["normalizer"]

    def close(self) -> None:
        for client in (self.katalogus, self.octopoes, self.bytes):
            client.close()
        self.redis.close()
