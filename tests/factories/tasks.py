"""Factories for task payloads and queues in tests."""

from __future__ import annotations

import itertools
import uuid

import redis

from kat_scheduler.models import BoefjeTask, NormalizerTask
from kat_scheduler.queues import PriorityQueue

_counter = itertools.count()


class FakeClock:
    """A clock the test moves by hand, in milliseconds."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


def boefje_task(org: str = "org1", boefje: str = "dns-records", ooi: str | None = None) -> BoefjeTask:
    ooi = ooi if ooi is not None else f"Hostname|internet|host{next(_counter)}.example"
    return BoefjeTask(boefje={"id": boefje}, input_ooi=ooi, organization=org)


def normalizer_task(org: str = "org1", normalizer: str = "kat_dns_normalize") -> NormalizerTask:
    return NormalizerTask(
        normalizer={"id": normalizer},
        raw_data={
            "id": str(uuid.uuid4()),
            "boefje_meta": {"id": str(uuid.uuid4()), "boefje": {"id": "dns-records"},
                            "input_ooi": "Hostname|internet|example.com", "organization": org},
            "mime_types": [{"value": "boefje/dns-records"}],
        },
    )


def make_queue(client: redis.Redis, prefix: str, kind: str = "boefje", **options: object) -> PriorityQueue:
    return PriorityQueue(client, kind, prefix=prefix, **options)  # type: ignore[arg-type]
