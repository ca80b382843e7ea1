"""The simulated KAT world, its events, and the in-process bus."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from kat_scheduler.connectors.listeners import InProcessBus
from kat_scheduler.models import OOI, Plugin, RawFileReceived, ScanProfileMutation
from kat_scheduler.simulation import SimulatedKAT, World, generate_mutations, publish_mutations
from kat_scheduler.simulation.events import RAW_FILE_RECEIVED, SCAN_PROFILE_MUTATIONS


def test_the_world_is_deterministic_for_a_seed() -> None:
    first = World.generate(seed=3, organisations=2, oois_per_organisation=80)
    again = World.generate(seed=3, organisations=2, oois_per_organisation=80)
    other = World.generate(seed=4, organisations=2, oois_per_organisation=80)
    assert first == again
    assert first.oois != other.oois or first.enabled != other.enabled
    assert list(generate_mutations(first, 50, seed=1)) == list(generate_mutations(again, 50, seed=1))


def test_the_world_has_the_requested_size_and_openkat_shapes() -> None:
    world = World.generate(seed=1, organisations=4, oois_per_organisation=300)
    assert sorted(world.organisations) == ["org1", "org2", "org3", "org4"]
    for org in world.organisations:
        oois = [OOI.model_validate(o) for o in world.iter_oois(org)]
        assert len(oois) == 300
        assert all(o.primary_key.split("|")[0] == o.object_type for o in oois)
        types = Counter(o.object_type for o in oois)
        assert {"Hostname", "IPAddressV4", "IPAddressV6", "URL", "Website", "DNSZone"} <= set(types)
        levels = Counter(o.scan_level for o in oois)
        assert None in levels and {0, 1, 2, 3, 4} <= set(levels)
    assert "Hostname|internet|host1.org1.example" in world.oois["org1"]
    assert "IPAddressV4|internet|192.0.2.1" in world.oois["org1"]


def test_the_catalogue_has_variety_and_per_organisation_switches() -> None:
    world = World.generate(seed=1, organisations=5)
    plugins = [Plugin.model_validate(p) for p in world.plugins_of("org1")]
    boefjes = [p for p in plugins if p.type == "boefje"]
    assert {b.scan_level for b in boefjes} >= {1, 2, 3}
    assert any(b.interval for b in boefjes) and any(b.run_on for b in boefjes)
    nmap = next(b for b in boefjes if b.id == "nmap")
    assert nmap.consumes == ["IPAddressV4", "IPAddressV6"] and nmap.scan_level == 2
    normalizer = next(p for p in plugins if p.id == "kat_dns_records_normalize")
    assert normalizer.consumes == ["boefje/dns-records", "dns-records"]
    switches = {org: tuple(sorted(world.enabled[org].items())) for org in world.organisations}
    assert len(set(switches.values())) > 1  # organisations differ in what they enabled
    assert any(not enabled for enabled in world.enabled["org1"].values())


def test_saving_a_raw_file_publishes_raw_file_received_in_the_contract_shape() -> None:
    bus = InProcessBus()
    received: list[RawFileReceived] = []
    bus.subscribe(RAW_FILE_RECEIVED, RawFileReceived, received.append)
    world = World.generate(seed=2, organisations=1, oois_per_organisation=10)
    with SimulatedKAT.start(world, publisher=bus) as kat:
        started = datetime(2024, 5, 1, tzinfo=UTC)
        meta = kat.bytes.record_run("org1", "dns-records", "Hostname|internet|host1.org1.example",
                                    started, started)
        raw_id = kat.bytes.save_raw(meta["id"], b"example.com. A 192.0.2.1", ["text/plain"])
    assert len(received) == 1 and not bus.dead
    event = received[0]
    assert event.event_id == "raw_file_received" and event.organization == "org1"
    assert event.raw_data.id == raw_id
    assert event.raw_data.boefje_meta.id == meta["id"]
    assert event.raw_data.boefje_meta.boefje.id == "dns-records"
    assert event.raw_data.mime_type_values == ["boefje/dns-records", "text/plain"]
    assert world.raw_files[raw_id]["size"] == 24


def test_saving_a_raw_file_over_http_needs_a_token_and_publishes() -> None:
    import requests

    publisher = RecordingPublisher()
    world = World.generate(seed=2, organisations=1, oois_per_organisation=10)
    with SimulatedKAT.start(world, publisher=publisher) as kat:
        meta = kat.bytes.record_run("org1", "nmap", "IPAddressV4|internet|192.0.2.1",
                                    datetime.now(UTC), None)
        url = f"{kat.bytes_url}/bytes/raw"
        params = {"boefje_meta_id": meta["id"], "mime_types": ["nmap"]}
        assert requests.post(url, params=params, data=b"x", timeout=5).status_code == 401
        token = requests.post(f"{kat.bytes_url}/token", data={"username": "bytes", "password": "bytes"},
                              timeout=5).json()
        assert token["token_type"] == "bearer" and token["expires_at"]
        answer = requests.post(url, params=params, data=b"PORT 22/tcp open", timeout=5,
                               headers={"Authorization": f"bearer {token['access_token']}"})
        assert answer.status_code == 200
    [(queue, body)] = publisher.messages
    assert queue == RAW_FILE_RECEIVED
    json.dumps(body)  # what goes on the wire is plain JSON
    assert body["raw_data"]["id"] == answer.json()["id"]
    assert [m["value"] for m in body["raw_data"]["mime_types"]] == ["boefje/nmap", "nmap"]
    assert set(body) >= {"event_id", "created_at", "organization", "raw_data"}


class RecordingPublisher:
    """An EventPublisher that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, queue_name: str, body: dict[str, Any]) -> None:
        self.messages.append((queue_name, body))

    def close(self) -> None:
        pass


def test_octopoes_changes_publish_scan_profile_mutations_including_deletes() -> None:
    bus = InProcessBus()
    seen: list[ScanProfileMutation] = []
    bus.subscribe(SCAN_PROFILE_MUTATIONS, ScanProfileMutation, seen.append)
    world = World.generate(seed=2, organisations=1, oois_per_organisation=10)
    with SimulatedKAT.start(world, publisher=bus) as kat:
        kat.octopoes.add_object("org1", "Hostname|internet|new.org1.example", level=1)
        kat.octopoes.set_scan_level("org1", "Hostname|internet|new.org1.example", 3)
        kat.octopoes.delete_object("org1", "Hostname|internet|new.org1.example")
    assert [m.operation for m in seen] == ["create", "update", "delete"]
    assert seen[1].value is not None and seen[1].value.scan_level == 3
    assert seen[2].value is None and seen[2].primary_key == "Hostname|internet|new.org1.example"
    assert {m.client_id for m in seen} == {"org1"}
    assert "Hostname|internet|new.org1.example" not in world.oois["org1"]


def test_generated_mutations_validate_and_include_deletes() -> None:
    world = World.generate(seed=5, organisations=3, oois_per_organisation=50)
    bus = InProcessBus()
    seen: list[ScanProfileMutation] = []
    bus.subscribe(SCAN_PROFILE_MUTATIONS, ScanProfileMutation, seen.append)
    published = publish_mutations(bus, world, 600, seed=9)
    assert len(seen) == len(published) == 600 and not bus.dead
    operations = Counter(m.operation for m in seen)
    assert operations["delete"] > 0 and operations["update"] > operations["create"] > 0
    assert {m.client_id for m in seen} == {"org1", "org2", "org3"}
    assert all(m.value is None for m in seen if m.operation == "delete")
    only_org2 = list(generate_mutations(world, 20, organisation="org2"))
    assert {m["client_id"] for m in only_org2} == {"org2"}


# -- the in-process bus ----------------------------------------------------------------------------


def mutation(n: int, org: str = "org1") -> dict[str, object]:
    key = f"Hostname|internet|host{n}.example"
    return {"operation": "update", "primary_key": key, "client_id": org,
            "value": {"primary_key": key, "object_type": "Hostname",
                      "scan_profile": {"level": 1, "reference": key, "scan_profile_type": "declared"}}}


def test_the_bus_delivers_validated_models_and_keeps_messages_for_late_subscribers() -> None:
    bus = InProcessBus()
    bus.publish("q", mutation(1))
    assert bus.waiting("q") == 1
    seen: list[ScanProfileMutation] = []
    bus.subscribe("q", ScanProfileMutation, seen.append)
    bus.publish("q", mutation(2))
    assert [m.primary_key for m in seen] == [
        "Hostname|internet|host1.example", "Hostname|internet|host2.example"
    ]
    assert isinstance(seen[0], ScanProfileMutation) and bus.waiting("q") == 0


def test_the_bus_dead_letters_malformed_messages_and_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    bus = InProcessBus()
    seen: list[ScanProfileMutation] = []
    bus.subscribe("q", ScanProfileMutation, seen.append)
    bus.publish("q", b"{not json")
    bus.publish("q", {"operation": "explode", "primary_key": "x", "client_id": "org9"})
    bus.publish("q", mutation(3))
    assert len(seen) == 1
    assert [d.reason.split(":")[0] for d in bus.dead] == ["malformed", "malformed"]
    assert "operation" in bus.dead[1].reason
    assert "organisation org9" in caplog.text


def test_the_bus_retries_a_failing_handler_then_dead_letters() -> None:
    bus = InProcessBus()
    calls: Counter[str] = Counter()

    def handler(message: ScanProfileMutation) -> None:
        calls[message.primary_key] += 1
        if message.primary_key.endswith("host1.example"):
            raise RuntimeError("boom")

    bus.subscribe("q", ScanProfileMutation, handler, max_redeliveries=2)
    bus.publish("q", mutation(1))
    bus.publish("q", mutation(2))
    assert calls["Hostname|internet|host1.example"] == 3
    assert calls["Hostname|internet|host2.example"] == 1
    assert len(bus.dead) == 1 and "handler failed 3 times" in bus.dead[0].reason
