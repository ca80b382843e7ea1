"""Events through the real RabbitMQ into the real Redis: publish -> listener -> scheduler -> queue,
with two scheduler workers' listeners on the same queues."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kat_scheduler.connectors.listeners.openkat import RAW_FILE_RECEIVED, SCAN_PROFILE_MUTATIONS
from kat_scheduler.context import AppContext
from kat_scheduler.listening import start_listeners
from kat_scheduler.simulation import SimulatedKAT
from kat_scheduler.simulation.events import raw_file_received
from tests.factories.kat_world import ORG, mutation
from tests.factories.rabbitmq_fixtures import TestPublisher, delete_queues, unique_queue_name
from tests.factories.waiting import wait_for


@pytest.fixture
def queues(rabbitmq_url: str) -> Iterator[tuple[str, str]]:
    names = unique_queue_name("kat-test-mutations"), unique_queue_name("kat-test-raw")
    yield names
    delete_queues(rabbitmq_url, *names)


def test_two_workers_turn_every_event_into_its_tasks_once(
    context: AppContext, kat: SimulatedKAT, queues: tuple[str, str], rabbit_publisher: TestPublisher
) -> None:
    mutations_queue, raw_queue = queues
    for queue in queues:  # as Octopoes and Bytes do: a message to a queue nobody declared is dropped
        rabbit_publisher.declare(queue)
    names = {SCAN_PROFILE_MUTATIONS: mutations_queue, RAW_FILE_RECEIVED: raw_queue}
    workers = [start_listeners(context, names) for _ in range(2)]
    try:
        hosts = [f"Hostname|internet|host{n}.example" for n in range(300)]
        for host in hosts:  # a create queues dns, on-create and on-both
            rabbit_publisher.publish(mutations_queue, mutation("create", host, level=1).model_dump(mode="json"))
        meta = {"id": str(uuid.uuid4()), "boefje": {"id": "dns", "version": None}, "input_ooi": hosts[0],
                "arguments": {}, "organization": ORG, "started_at": datetime.now(UTC).isoformat(),
                "ended_at": datetime.now(UTC).isoformat()}
        rabbit_publisher.publish(raw_queue, raw_file_received(str(uuid.uuid4()), meta, ["boefje/dns", "text/plain"]))

        def handled() -> int:
            return sum(listener.handled for running in workers for listener, _ in running)

        wait_for(lambda: handled() >= 301, 30, "every event handled")
        assert context.boefjes.size() == 900 and context.normalizers.size() == 2
        assert sum(1 for running in workers if running[0][0].handled) == 2  # both workers took a share
        claimed = context.boefjes.claim(1000)
        identities = {(r.ooi, r.plugin_id) for r in claimed}
        assert len(identities) == len(claimed) == 900
        assert {plugin for _, plugin in identities} == {"dns", "on-create", "on-both"}
    finally:
        for running in workers:
            for listener, thread in running:
                listener.stop()
                thread.join(timeout=30)
