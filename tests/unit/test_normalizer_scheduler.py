from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from kat_scheduler.context import AppContext
from kat_scheduler.models import RawFileReceived
from kat_scheduler.queues import PushOutcome
from kat_scheduler.schedulers import NormalizerScheduler
from kat_scheduler.simulation import SimulatedKAT
from tests.factories.kat_world import ORG


@pytest.fixture
def scheduler(context: AppContext) -> NormalizerScheduler:
    return NormalizerScheduler(context)


def raw_file(mime_types: list[str], boefje: str = "dns") -> RawFileReceived:
    meta = {"id": str(uuid.uuid4()), "boefje": {"id": boefje, "version": None},
            "input_ooi": "Hostname|internet|a.example", "arguments": {}, "organization": ORG,
            "started_at": datetime.now(UTC).isoformat(), "ended_at": datetime.now(UTC).isoformat()}
    return RawFileReceived.model_validate({
        "event_id": "raw_file_received", "created_at": datetime.now(UTC).isoformat(), "organization": ORG,
        "raw_data": {"id": str(uuid.uuid4()), "boefje_meta": meta,
                     "mime_types": [{"value": value} for value in mime_types]}})


def test_a_raw_file_event_naming_another_organisation_is_refused() -> None:
    event = raw_file(["boefje/dns"]).model_dump(mode="json")
    event["organization"] = "someone-else"
    with pytest.raises(ValidationError, match="not the raw file's organisation"):
        RawFileReceived.model_validate(event)


def test_each_enabled_normalizer_of_any_mime_type_runs_once(scheduler: NormalizerScheduler,
                                                             context: AppContext) -> None:
    event = raw_file(["boefje/dns", "dns", "text/plain", "text/plain"])
    results = scheduler.on_raw_file(event)
    assert [r.outcome for r in results] == [PushOutcome.QUEUED, PushOutcome.QUEUED]
    claimed = context.normalizers.claim(10)
    assert sorted(r.plugin_id for r in claimed) == ["norm-dns", "norm-text"]  # norm-off is disabled
    assert all(r.data["raw_data"]["id"] == event.raw_data.id for r in claimed)


def test_the_same_raw_file_twice_gives_no_second_task(scheduler: NormalizerScheduler, context: AppContext) -> None:
    event = raw_file(["boefje/dns"])
    scheduler.on_raw_file(event)
    assert [r.outcome for r in scheduler.on_raw_file(event)] == [PushOutcome.DUPLICATE]
    assert context.normalizers.size() == 1


def test_a_failed_boefje_run_gets_no_normalizers(scheduler: NormalizerScheduler, context: AppContext) -> None:
    assert scheduler.on_raw_file(raw_file(["boefje/dns", "error/boefje"])) == []
    assert context.normalizers.size() == 0


def test_a_file_nobody_reads_gets_nothing(scheduler: NormalizerScheduler, context: AppContext) -> None:
    assert scheduler.on_raw_file(raw_file(["image/png"])) == []


def test_a_manual_normalizer_run_reads_the_raw_file_from_bytes(
    scheduler: NormalizerScheduler, context: AppContext, kat: SimulatedKAT
) -> None:
    meta = kat.bytes.record_run(ORG, "dns", "Hostname|internet|a.example", datetime.now(UTC), datetime.now(UTC))
    raw_id = kat.bytes.save_raw(meta["id"], b"answer", ["text/plain"])
    result = scheduler.push_manual(ORG, "norm-text", raw_id)
    assert result.outcome is PushOutcome.QUEUED
    [task] = context.normalizers.claim()
    assert task.score < 0 and task.data["raw_data"]["id"] == raw_id
    with pytest.raises(LookupError):
        scheduler.push_manual(ORG, "norm-text", str(uuid.uuid4()))
    with pytest.raises(LookupError):
        scheduler.push_manual(ORG, "dns", raw_id)  # a boefje, not a normalizer
