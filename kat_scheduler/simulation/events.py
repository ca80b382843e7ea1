"""The events OpenKAT publishes, in their real shapes (contracts §4), and a generator of mutations."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from kat_scheduler.simulation.publisher import EventPublisher
from kat_scheduler.simulation.world import JSON, World

SCAN_PROFILE_MUTATIONS = "scan_profile_mutations"
RAW_FILE_RECEIVED = "raw_file_received"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def scan_profile_mutation(organisation: str, operation: str, primary_key: str, value: JSON | None) -> JSON:
    """Octopoes' message; `value` is None on a delete."""
    return {"operation": operation, "primary_key": primary_key, "value": value, "client_id": organisation}


def raw_file_received(raw_id: str, boefje_meta: JSON, mime_types: list[str]) -> JSON:
    """Bytes' message when a boefje's output was saved."""
    return {
        "event_id": "raw_file_received",
        "created_at": now_iso(),
        "organization": boefje_meta["organization"],
        "raw_data": {
            "id": raw_id,
            "boefje_meta": boefje_meta,
            "mime_types": [{"value": value} for value in mime_types],
            "secure_hash": None,
            "hash_retrieval_link": None,
        },
    }


def generate_mutations(
    world: World,
    count: int,
    seed: int = 0,
    organisation: str | None = None,
    delete_fraction: float = 0.05,
) -> Iterator[JSON]:
    """`count` plausible mutations of the world's objects (not applied to it), deterministic per seed.

    Mostly updates with a new scan level, some creates, and `delete_fraction` deletes (value null).
    Organisations are taken round-robin unless one is named.
    """
    rng = random.Random(seed)
    organisations = [organisation] if organisation else sorted(world.oois)
    keys = {org: sorted(world.oois[org]) for org in organisations}
    for number in range(count):
        org = organisations[number % len(organisations)]
        primary_key = rng.choice(keys[org])
        roll = rng.random()
        if roll < delete_fraction:
            yield scan_profile_mutation(org, "delete", primary_key, None)
            continue
        operation = "create" if roll < delete_fraction + 0.15 else "update"
        value = dict(world.oois[org][primary_key])
        value["scan_profile"] = {"level": rng.randint(0, 4), "reference": primary_key,
                                 "scan_profile_type": "declared"}
        yield scan_profile_mutation(org, operation, primary_key, value)


def publish_mutations(publisher: EventPublisher, world: World, count: int, **options: Any) -> list[JSON]:
    """Publish `count` generated mutations on `scan_profile_mutations`; answers what was published."""
    events = list(generate_mutations(world, count, **options))
    for event in events:
        publisher.publish(SCAN_PROFILE_MUTATIONS, event)
    return events


def new_id() -> str:
    return str(uuid.uuid4())
