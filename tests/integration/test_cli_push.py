"""`kat-scheduler push` against the real Redis and the simulated KAT services."""

from __future__ import annotations

import pytest
import redis

from kat_scheduler.cli import main
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.simulation import SimulatedKAT
from tests.factories.kat_world import ORG
from tests.factories.redis_fixtures import REDIS_URL


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, kat: SimulatedKAT, key_prefix: str, real_redis: redis.Redis) -> None:
    for name, value in {"KATALOGUS_API": kat.katalogus_url, "OCTOPOES_API": kat.octopoes_url,
                        "BYTES_API": kat.bytes_url, "SCHEDULER_REDIS_URL": REDIS_URL,
                        "SCHEDULER_KEY_PREFIX": key_prefix}.items():
        monkeypatch.setenv(name, value)


def test_push_boefje_queues_a_manual_run_and_refuses_a_second(
    environment: None, real_redis: redis.Redis, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["push", "boefje", "--org", ORG, "--boefje", "dns", "--ooi", "Hostname|internet|a.example"]
    assert main(argv) == 0
    task_id = capsys.readouterr().out.strip()
    queue = PriorityQueue(real_redis, "boefje", prefix=key_prefix)
    [claimed] = queue.claim()
    assert claimed.id == task_id and claimed.score < 0
    assert main(argv) == 3
    assert f"task {task_id} holds this work (dispatched)" in capsys.readouterr().err


def test_push_names_what_it_could_not_find(environment: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", "boefje", "--org", ORG, "--boefje", "nope", "--ooi", "Hostname|internet|a.example"]) == 4
    assert "no boefje 'nope'" in capsys.readouterr().err
    assert main(["push", "normalizer", "--org", ORG, "--normalizer", "norm-text", "--raw-file", "missing"]) == 4
