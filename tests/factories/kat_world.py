"""A small, hand-made KAT world for scheduler tests, served by the simulated services."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from kat_scheduler.config import load_settings
from kat_scheduler.connectors.listeners import InProcessBus
from kat_scheduler.context import AppContext
from kat_scheduler.models import ScanProfileMutation
from kat_scheduler.simulation import SimulatedKAT, World
from kat_scheduler.simulation.world import ooi
from tests.factories.tasks import FakeClock

ORG = "org1"


def boefje(plugin_id: str, consumes: list[str], level: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": plugin_id, "type": "boefje", "name": plugin_id, "scan_level": level, "consumes": consumes,
            "interval": None, "run_on": None, "cron": None, **extra}


def normalizer(plugin_id: str, consumes: list[str]) -> dict[str, Any]:
    return {"id": plugin_id, "type": "normalizer", "consumes": consumes}


PLUGINS = [
    boefje("dns", ["Hostname"]),
    boefje("deep", ["Hostname"], level=3),
    boefje("off", ["Hostname"]),
    boefje("nmap", ["IPAddressV4"], level=2),
    boefje("on-create", ["Hostname"], run_on=["create"]),
    boefje("on-update", ["Hostname"], run_on=["update"]),
    boefje("on-both", ["Hostname"], run_on=["create", "update"]),
    normalizer("norm-dns", ["boefje/dns", "dns"]),
    normalizer("norm-text", ["text/plain"]),
    normalizer("norm-off", ["text/plain"]),
]
DISABLED = {"off", "norm-off"}


def tiny_world(oois: list[tuple[str, int | None]] = ()) -> World:  # type: ignore[assignment]
    return World(
        seed=0,
        organisations={ORG: {"id": ORG, "name": "Organisation 1"}},
        oois={ORG: {pk: ooi(pk, level) for pk, level in oois}},
        plugins={p["id"]: p for p in PLUGINS},
        enabled={ORG: {p["id"]: p["id"] not in DISABLED for p in PLUGINS}},
    )


def mutation(operation: str, primary_key: str, level: int | None = 1, org: str = ORG) -> ScanProfileMutation:
    value = None if operation == "delete" else ooi(primary_key, level)
    return ScanProfileMutation.model_validate(
        {"operation": operation, "primary_key": primary_key, "value": value, "client_id": org})


@pytest.fixture
def world() -> World:
    return tiny_world([("Hostname|internet|a.example", 2), ("Hostname|internet|b.example", 1),
                       ("IPAddressV4|internet|192.0.2.1", 2), ("Hostname|internet|none.example", None)])


@pytest.fixture
def kat(world: World) -> Iterator[SimulatedKAT]:
    simulated = SimulatedKAT.start(world, InProcessBus())
    yield simulated
    simulated.stop()


@pytest.fixture
def wall_clock() -> FakeClock:
    """A hand-moved clock that starts at the real time, so Bytes' timestamps compare with it."""
    return FakeClock(int(time.time() * 1000))


@pytest.fixture
def context(kat: SimulatedKAT, client: redis.Redis, key_prefix: str, wall_clock: FakeClock) -> Iterator[AppContext]:
    settings = load_settings(katalogus_api=kat.katalogus_url, octopoes_api=kat.octopoes_url,
                             bytes_api=kat.bytes_url, key_prefix=key_prefix, katalogus_cache_ttl=0,
                             schedule_jitter_seconds=0)
    built = AppContext.create(settings, redis_client=client, clock_ms=wall_clock)
    yield built
    for service_client in (built.katalogus, built.octopoes, built.bytes):
        service_client.close()
