"""A property of the queue on the real Redis: whatever one organisation pushes or sends as an event (any
organisation id, object key, plugin id or payload text, refused or not), another organisation's task is
left exactly as it was, and no work of the one shares an identity with work of the other (the identity
keys the last run the grace period reads and the schedule)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kat_scheduler.connectors.listeners.decoding import MalformedMessage, decode
from kat_scheduler.models import ScanProfileMutation
from kat_scheduler.queues import InvalidItem, PushOutcome
from tests.factories.redis_fixtures import delete_prefixed
from tests.factories.tasks import boefje_task, make_queue

pytestmark = pytest.mark.integration

VICTIM_ORG, VICTIM_PLUGIN, VICTIM_OOI = "corp", "nmap-udp", "URL|internet|http://victim.example/"

organisations = st.one_of(st.sampled_from(["udp-corp", "corp:URL|internet|http", "corp-", "-corp", "corp{x}",
                                           "Corp", "co", "corp\x1f"]), st.text(max_size=40))
object_keys = st.one_of(st.sampled_from([VICTIM_OOI, "//victim.example/", VICTIM_OOI + ":", "http://victim"]),
                        st.text(max_size=60))
plugin_ids = st.one_of(st.sampled_from(["nmap", VICTIM_PLUGIN, "udp", "nmap-udp-corp"]), st.text(max_size=20))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(organisation=organisations, ooi=object_keys, plugin=plugin_ids, text=st.text(max_size=30),
       operation=st.sampled_from(["create", "update", "delete"]))
def test_nothing_one_organisation_sends_changes_another_organisations_task(
    real_redis: redis.Redis, organisation: str, ooi: str, plugin: str, text: str, operation: str
) -> None:
    prefix = f"kat-isolation-{uuid.uuid4().hex[:8]}"
    queue = make_queue(real_redis, prefix)
    try:
        victim = boefje_task(org=VICTIM_ORG, boefje=VICTIM_PLUGIN, ooi=VICTIM_OOI)
        queue.push(victim, 500)
        before = queue.records.get(victim.id)
        if organisation != VICTIM_ORG:
            payload = {"boefje": {"id": plugin, "name": text}, "input_ooi": ooi, "organization": organisation}
            try:
                result = queue.push(payload, 100)
            except InvalidItem:
                pass
            else:
                assert result.outcome is PushOutcome.QUEUED  # never a duplicate of the victim's work
                # Its identity is its own, so its last run and its schedule can never count as the victim's.
                assert queue.validate(payload).hash != victim.hash
            event = json.dumps({"operation": operation, "client_id": organisation, "primary_key": ooi})
            try:
                message = decode(ScanProfileMutation, event)
            except MalformedMessage:
                pass
            else:
                queue.cancel_ooi(message.client_id, message.primary_key)
        after = queue.records.get(victim.id)
        assert after == before
        assert [r.id for r in queue.list_queued(organisation=VICTIM_ORG)] == [victim.id]
    finally:
        delete_prefixed(real_redis, prefix)
