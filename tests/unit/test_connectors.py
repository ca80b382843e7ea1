"""The Katalogus, Octopoes and Bytes clients against the simulated services over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kat_scheduler.config import load_settings
from kat_scheduler.connectors.services import (
    BytesClient,
    KatalogusClient,
    OctopoesClient,
    ServiceError,
    ServiceUnavailable,
)
from kat_scheduler.simulation import SimulatedKAT, World

FAST: dict[str, Any] = {"retries": 2, "backoff": 0.001}


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=7, organisations=3, oois_per_organisation=250)


@pytest.fixture
def kat(world: World) -> Iterator[SimulatedKAT]:
    with SimulatedKAT.start(world) as kat:
        yield kat


@pytest.fixture
def katalogus(kat: SimulatedKAT) -> Iterator[KatalogusClient]:
    with KatalogusClient(kat.katalogus_url, timeout=2.0, **FAST) as client:
        yield client


@pytest.fixture
def octopoes(kat: SimulatedKAT) -> Iterator[OctopoesClient]:
    with OctopoesClient(kat.octopoes_url, timeout=2.0, **FAST) as client:
        yield client


@pytest.fixture
def bytes_client(kat: SimulatedKAT) -> Iterator[BytesClient]:
    with BytesClient(kat.bytes_url, "bytes", "bytes", timeout=2.0, **FAST) as client:
        yield client


# -- Katalogus -----------------------------------------------------------------------------------


def test_katalogus_lists_organisations_from_an_object_keyed_by_id(katalogus: KatalogusClient) -> None:
    organisations = katalogus.get_organisations()
    assert [org.id for org in organisations] == ["org1", "org2", "org3"]
    assert organisations[0].name == "Organisation 1"
    assert katalogus.get_organisation("org2") is not None
    assert katalogus.health() is True


def test_katalogus_unknown_things_are_none_or_empty(katalogus: KatalogusClient) -> None:
    assert katalogus.get_organisation("nope") is None
    assert katalogus.get_plugin("org1", "no-such-boefje") is None
    assert katalogus.get_plugins("nope") == []


def test_boefjes_by_ooi_type_include_disabled_ones(katalogus: KatalogusClient, world: World) -> None:
    boefjes = katalogus.get_boefjes_by_ooi_type("org1", "IPAddressV4")
    assert {b.id for b in boefjes} == {p["id"] for p in world.boefjes_for("IPAddressV4")}
    assert all(b.type == "boefje" and "IPAddressV4" in b.consumes for b in boefjes)
    assert {b.enabled for b in boefjes} == {True, False}  # nmap-udp is off by default
    nmap = katalogus.get_plugin("org1", "nmap")
    assert nmap is not None and nmap.scan_level == 2 and nmap.oci_image


def test_normalizers_bind_to_a_boefje_mime_type(katalogus: KatalogusClient) -> None:
    by_mime = katalogus.get_normalizers_by_mime_type("org1", "boefje/dns-records")
    by_id = katalogus.get_normalizers_by_mime_type("org1", "dns-records")
    assert [n.id for n in by_mime] == [n.id for n in by_id] == ["kat_dns_records_normalize"]


def test_extra_unknown_fields_are_ignored(katalogus: KatalogusClient, world: World) -> None:
    # The world's plugins carry fields the model does not know (description, related, boefje_schema).
    assert "boefje_schema" in world.plugins["dns-records"]
    plugins = katalogus.get_plugins("org1")
    assert len(plugins) == len(world.plugins)
    assert not hasattr(plugins[0], "boefje_schema")


def test_katalogus_cache_makes_a_burst_one_request(kat: SimulatedKAT) -> None:
    client = KatalogusClient(kat.katalogus_url, cache_ttl=30.0, **FAST)
    threads = [threading.Thread(target=lambda: [client.get_boefjes_by_ooi_type("org1", "Hostname")
                                                for _ in range(125)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.request_count == 1
    assert kat.katalogus.requests_served == 1
    client.get_boefjes_by_ooi_type("org1", "Website")  # another key is another request
    client.get_boefjes_by_ooi_type("org2", "Hostname")
    assert client.request_count == 3


def test_katalogus_cache_expires_and_can_be_cleared(kat: SimulatedKAT) -> None:
    now = [1000.0]
    client = KatalogusClient(kat.katalogus_url, cache_ttl=30.0, clock=lambda: now[0], **FAST)
    first = client.get_boefjes_by_ooi_type("org1", "Hostname")
    now[0] += 29.0
    assert client.get_boefjes_by_ooi_type("org1", "Hostname") == first
    assert client.request_count == 1
    now[0] += 2.0
    client.get_boefjes_by_ooi_type("org1", "Hostname")
    assert client.request_count == 2
    client.clear_cache()
    client.get_boefjes_by_ooi_type("org1", "Hostname")
    assert client.request_count == 3


def test_a_cached_list_is_a_copy(katalogus: KatalogusClient) -> None:
    katalogus.get_boefjes_by_ooi_type("org1", "Hostname").clear()
    assert katalogus.get_boefjes_by_ooi_type("org1", "Hostname")


def test_without_cache_every_call_is_a_request(kat: SimulatedKAT) -> None:
    client = KatalogusClient(kat.katalogus_url, cache_ttl=0, **FAST)
    for _ in range(5):
        client.get_boefjes_by_ooi_type("org1", "Hostname")
    assert client.request_count == 5


# -- retries, errors, timeouts ---------------------------------------------------------------------


def test_a_500_is_retried_and_the_retry_answers(kat: SimulatedKAT, katalogus: KatalogusClient) -> None:
    kat.katalogus.faults.fail_next = 2
    assert len(katalogus.get_organisations()) == 3
    assert katalogus.request_count == 3
    assert kat.katalogus.requests_served == 3


def test_500s_beyond_the_retries_raise_a_service_error_naming_service_and_url(
    kat: SimulatedKAT, katalogus: KatalogusClient
) -> None:
    kat.katalogus.faults.error_rate = 1.0
    with pytest.raises(ServiceUnavailable) as raised:
        katalogus.get_organisations()
    assert isinstance(raised.value, ServiceError)
    message = str(raised.value)
    assert "Katalogus" in message and f"{kat.katalogus_url}/v1/organisations" in message
    assert "HTTP 500" in message
    assert katalogus.request_count == 3  # one attempt and two retries
    assert katalogus.health() is False


def test_errors_are_not_cached(kat: SimulatedKAT, katalogus: KatalogusClient) -> None:
    kat.katalogus.faults.fail_next = 3
    with pytest.raises(ServiceUnavailable):
        katalogus.get_boefjes_by_ooi_type("org1", "Hostname")
    assert katalogus.get_boefjes_by_ooi_type("org1", "Hostname")


def test_a_timeout_is_retried(kat: SimulatedKAT) -> None:
    kat.octopoes.faults.hang_next = 1
    kat.octopoes.faults.hang_seconds = 5.0
    client = OctopoesClient(kat.octopoes_url, timeout=0.2, **FAST)
    started = time.monotonic()
    assert client.get_object("org1", "DNSZone|internet|org1.example") is not None
    assert client.request_count == 2
    assert time.monotonic() - started < 2.0


def test_timeouts_beyond_the_retries_raise(kat: SimulatedKAT) -> None:
    kat.octopoes.faults.timeout_rate = 1.0
    kat.octopoes.faults.hang_seconds = 5.0
    client = OctopoesClient(kat.octopoes_url, timeout=0.1, retries=1, backoff=0.001)
    with pytest.raises(ServiceUnavailable, match=r"Octopoes at http://127\.0\.0\.1:\d+/org1/object.*0\.1s"):
        client.get_object("org1", "DNSZone|internet|org1.example")
    assert client.request_count == 2


def test_a_service_that_is_down_raises_service_unavailable() -> None:
    world = World.generate(seed=1, organisations=1, oois_per_organisation=5)
    with SimulatedKAT.start(world) as kat:
        url = kat.katalogus_url
    client = KatalogusClient(url, timeout=0.5, retries=1, backoff=0.001)
    with pytest.raises(ServiceUnavailable, match="connection failed"):
        client.get_organisations()
    assert client.health() is False


def test_latency_is_added(kat: SimulatedKAT, katalogus: KatalogusClient) -> None:
    kat.katalogus.faults.latency = 0.2
    started = time.monotonic()
    katalogus.get_organisation("org1")
    assert time.monotonic() - started >= 0.2


# -- Octopoes --------------------------------------------------------------------------------------


def test_octopoes_pages_until_the_count_is_reached(kat: SimulatedKAT, world: World) -> None:
    client = OctopoesClient(kat.octopoes_url, **FAST)
    expected = sorted(pk for pk, o in world.oois["org2"].items()
                      if o["object_type"] in {"Hostname", "IPAddressV4"}
                      and o["scan_profile"] and o["scan_profile"]["level"] in {1, 2, 3})
    assert len(expected) > 40
    found = [o.primary_key for o in client.iter_objects("org2", ["Hostname", "IPAddressV4"], [1, 2, 3],
                                                        page_size=20)]
    assert found == expected
    assert client.request_count == -(-len(expected) // 20)
    assert all(o.scan_level in {1, 2, 3} for o in client.iter_objects("org2", ["Hostname"], [1, 2, 3]))


def test_octopoes_objects_without_a_scan_profile(kat: SimulatedKAT, world: World) -> None:
    client = OctopoesClient(kat.octopoes_url, **FAST)
    key = next(pk for pk, o in world.oois["org1"].items() if o["scan_profile"] is None)
    found = client.get_object("org1", key)
    assert found is not None and found.scan_profile is None and found.scan_level is None


def test_octopoes_unknown_object_and_organisation(octopoes: OctopoesClient) -> None:
    assert octopoes.get_object("org1", "Hostname|internet|gone.example") is None
    assert list(octopoes.iter_objects("nope", ["Hostname"], [1])) == []
    assert octopoes.health("org1") is True
    assert octopoes.health("nope") is False


# -- Bytes -----------------------------------------------------------------------------------------


def test_bytes_logs_in_and_finds_the_newest_run(kat: SimulatedKAT, bytes_client: BytesClient) -> None:
    ooi = "Hostname|internet|host1.org1.example"
    day = datetime(2024, 5, 1, tzinfo=UTC)
    kat.bytes.record_run("org1", "dns-records", ooi, day, day + timedelta(minutes=1))
    newest = kat.bytes.record_run("org1", "dns-records", ooi, day + timedelta(days=1), None)
    kat.bytes.record_run("org1", "nmap", ooi, day + timedelta(days=2), day + timedelta(days=2))
    kat.bytes.record_run("org2", "dns-records", ooi, day + timedelta(days=3), None)
    last = bytes_client.get_last_run("org1", "dns-records", ooi)
    assert last is not None and last.id == newest["id"] and last.ended_at is None
    assert bytes_client.get_last_run("org1", "dns-records", "Hostname|internet|never.example") is None
    assert kat.bytes.logins == 1


def test_bytes_logs_in_again_after_a_401(kat: SimulatedKAT, bytes_client: BytesClient) -> None:
    assert bytes_client.get_last_run("org1", "nmap", "x") is None
    kat.bytes.expire_tokens()
    before = bytes_client.request_count
    assert bytes_client.get_last_run("org1", "nmap", "x") is None
    assert kat.bytes.logins == 2
    assert bytes_client.request_count - before == 3  # the 401, the login, the retry


def test_bytes_wrong_password_is_a_clear_error(kat: SimulatedKAT) -> None:
    client = BytesClient(kat.bytes_url, "bytes", "wrong", **FAST)
    with pytest.raises(ServiceError, match=r"Bytes at .*/token: login as 'bytes' refused: HTTP 401"):
        client.get_last_run("org1", "nmap", "x")
    assert client.health() is True  # health needs no login


def test_clients_from_settings(kat: SimulatedKAT) -> None:
    settings = load_settings(katalogus_api=kat.katalogus_url, octopoes_api=kat.octopoes_url,
                             bytes_api=kat.bytes_url, katalogus_cache_ttl=5, bytes_request_timeout=3)
    assert KatalogusClient.from_settings(settings).health()
    assert OctopoesClient.from_settings(settings).health("org1")
    bytes_client = BytesClient.from_settings(settings)
    assert bytes_client.timeout == 3 and bytes_client.health()
