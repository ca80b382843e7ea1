"""The operator's commands (`kat-scheduler status`, `queue show`, `tasks`, `cancel`, `schedules`,
`dead-letters`) against a real Redis seeded under a key prefix of the test's own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from kat_scheduler.cli import main
from kat_scheduler.connectors.listeners import ScanProfileMutationListener
from kat_scheduler.leadership import beat_leader_key
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories import ScheduleRepository
from tests.factories.rabbitmq_fixtures import TestPublisher
from tests.factories.redis_fixtures import REDIS_URL
from tests.factories.tasks import FakeClock, boefje_task, make_queue, normalizer_task
from tests.factories.waiting import wait_for
from tests.integration.test_listeners import running as running_listener

HOUR = 3600
LEADER = "beat-host:4242:0badcafe"


@dataclass
class Seeded:
    boefjes: PriorityQueue
    normalizers: PriorityQueue
    claimed: str  # the boefje task in flight
    queued: dict[str, list[str]]  # boefje task ids per organisation, in serving order within it
    dead: str  # the dead-lettered normalizer task
    due_schedule: str


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, key_prefix: str, real_redis: redis.Redis) -> None:
    monkeypatch.setenv("SCHEDULER_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("SCHEDULER_KEY_PREFIX", key_prefix)


@pytest.fixture
def seeded(environment: None, real_redis: redis.Redis, key_prefix: str) -> Seeded:
    """Tasks pushed two hours ago: boefjes of org-a (3) and org-b (1), one of them claimed; one normalizer
    dead-lettered and one queued; a due and a future schedule; a beat leader."""
    clock = FakeClock(int(time.time() * 1000) - 2 * HOUR * 1000)
    boefjes = make_queue(real_redis, key_prefix, "boefje", lease_seconds=60, max_attempts=1, clock_ms=clock)
    normalizers = make_queue(real_redis, key_prefix, "normalizer", lease_seconds=60, max_attempts=1, clock_ms=clock)
    a_tasks = [boefje_task("org-a") for _ in range(3)]
    b_task = boefje_task("org-b")
    boefjes.push_many([(a_tasks[0], 300), (a_tasks[1], 100), (a_tasks[2], 200), (b_task, 50)])
    [claimed] = boefjes.claim(1)
    order = {"org-a": [a_tasks[1].id, a_tasks[2].id, a_tasks[0].id], "org-b": [b_task.id]}
    queued = {org: [task_id for task_id in ids if task_id != claimed.id] for org, ids in order.items()}

    doomed, kept = normalizer_task("org-a"), normalizer_task("org-b")
    normalizers.push(doomed, -5)  # manual: claimed first
    normalizers.push(kept, 10)
    assert [record.id for record in normalizers.claim(1)] == [doomed.id]
    clock.advance(61)
    assert normalizers.reap().dead_lettered == [doomed.id]

    schedules = ScheduleRepository(real_redis, key_prefix, "boefje")
    now = datetime.now(UTC)
    due = schedules.new("org-a", {"boefje": {"id": "dns"}, "input_ooi": "Hostname|internet|due.example",
                                  "organization": "org-a"}, "hash-due", deadline_at=now - timedelta(minutes=5))
    schedules.new("org-b", {"boefje": {"id": "dns"}, "input_ooi": "Hostname|internet|later.example",
                            "organization": "org-b"}, "hash-later", deadline_at=now + timedelta(hours=1))
    real_redis.set(beat_leader_key(key_prefix), LEADER, px=10_000)
    return Seeded(boefjes, normalizers, claimed.id, queued, doomed.id, due.id)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


# -- status ------------------------------------------------------------------------------------------


def test_status_shows_leader_depths_flight_dead_letters_wait_and_due_schedules(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, status = run_json(capsys, "status")
    assert code == 0
    assert status["beat"]["leader"] == LEADER and 0 < status["beat"]["lease_seconds_left"] <= 10
    assert status["dispatchers"]["seen"] is False
    boefje, normalizer = status["queues"]["boefje"], status["queues"]["normalizer"]
    assert boefje["queued"] == 3 and boefje["in_flight"] == 1 and boefje["dead_letters"] == 0
    assert boefje["by_organisation"] == {org: len(ids) for org, ids in seeded.queued.items() if ids}
    assert 2 * HOUR - 60 <= boefje["oldest_age_seconds"] <= 2 * HOUR + 60
    assert boefje["due_schedules"] == 1 and boefje["schedules"] == 2
    assert normalizer["queued"] == 1 and normalizer["in_flight"] == 0 and normalizer["dead_letters"] == 1

    code, text, _ = run(capsys, "status")
    assert code == 0
    assert f"beat leader:  {LEADER} (lease " in text
    assert "no dispatcher seen" in text
    assert "boefje queued per organisation:" in text and "org-a" in text
    assert "1 of 2" in text  # due schedules


def test_status_without_a_leader_says_so(environment: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, status = run_json(capsys, "status")
    assert code == 0 and status["beat"] == {"leader": None, "lease_seconds_left": None}
    assert all(queue["queued"] == 0 and queue["oldest_age_seconds"] is None for queue in status["queues"].values())
    assert "no beat holds the leader lease" in run(capsys, "status")[1]


def test_status_json_is_the_only_thing_on_stdout(seeded: Seeded, key_prefix: str) -> None:
    """A script pipes stdout to a JSON parser; log lines go to stderr."""
    done = subprocess.run([sys.executable, "-m", "kat_scheduler.cli", "status", "--json"], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"SCHEDULER_REDIS_URL": REDIS_URL, "SCHEDULER_KEY_PREFIX": key_prefix, "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["queues"]["boefje"]["queued"] == 3


# -- queue show ---------------------------------------------------------------------------------------


def test_queue_show_lists_each_organisation_in_serving_order_with_scores(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, shown = run_json(capsys, "queue", "show", "boefje")
    assert code == 0 and shown["queued"] == 3
    organisations = shown["organisations"]
    assert [org["turn"] for org in organisations] == list(range(1, len(organisations) + 1))
    for org in organisations:
        assert [task["id"] for task in org["tasks"]] == seeded.queued[org["organisation"]]
        scores = [task["score"] for task in org["tasks"]]
        assert scores == sorted(scores)
    assert shown["organisations"][0]["tasks"][0]["id"] == seeded.boefjes.peek(1)[0].id

    code, one = run_json(capsys, "queue", "show", "boefje", "--org", "org-a", "--limit", "1")
    assert code == 0 and [org["organisation"] for org in one["organisations"]] == ["org-a"]
    assert [task["id"] for task in one["organisations"][0]["tasks"]] == seeded.queued["org-a"][:1]

    code, text, _ = run(capsys, "queue", "show", "boefje")
    assert code == 0 and "score" in text and seeded.queued["org-a"][0] in text


def test_queue_show_of_an_empty_queue_exits_1(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, shown = run_json(capsys, "queue", "show", "boefje", "--org", "nobody")
    assert code == 1 and shown["organisations"] == [{"organisation": "nobody", "turn": None, "queued": 0,
                                                      "tasks": []}]


# -- tasks and cancel ------------------------------------------------------------------------------


def test_tasks_lists_and_filters_records(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, queued = run_json(capsys, "tasks", "--kind", "boefje", "--status", "queued")
    assert code == 0 and queued["count"] == 3
    assert {task["id"] for task in queued["results"]} == {i for ids in seeded.queued.values() for i in ids}
    code, org_b = run_json(capsys, "tasks", "--org", "org-b")
    assert code == 0 and {task["organisation"] for task in org_b["results"]} == {"org-b"}
    assert {task["type"] for task in org_b["results"]} == {"boefje", "normalizer"}
    code, limited = run_json(capsys, "tasks", "--limit", "2")
    assert code == 0 and len(limited["results"]) == 2 and limited["count"] == 6
    code, none = run_json(capsys, "tasks", "--status", "running")
    assert code == 1 and none == {"count": 0, "results": []}
    code, text, _ = run(capsys, "tasks", "--kind", "normalizer")
    assert code == 0 and seeded.dead in text and "failed" in text


def test_tasks_show_one_record(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, task = run_json(capsys, "tasks", "show", seeded.claimed)
    assert code == 0 and task["id"] == seeded.claimed and task["status"] == "dispatched"
    code, text, _ = run(capsys, "tasks", "show", seeded.dead)
    assert code == 0 and "lease expired 1 times" in text
    code, _, err = run(capsys, "tasks", "show", "no-such-task")
    assert code == 4 and "no task no-such-task" in err


def test_cancel_cancels_queued_tasks_and_refuses_the_others(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = seeded.queued["org-a"][0]
    code, out, _ = run(capsys, "cancel", victim)
    assert code == 0 and f"{victim} cancelled" in out
    record = seeded.boefjes.records.get(victim)
    assert record is not None and record.status == "cancelled"
    code, _, err = run(capsys, "cancel", seeded.claimed)
    assert code == 3 and "it is dispatched" in err
    code, result = run_json(capsys, "cancel", seeded.claimed, "no-such-task")
    assert code == 4 and result == {"results": {seeded.claimed: "dispatched", "no-such-task": "unknown"}}


# -- schedules ----------------------------------------------------------------------------------------


def test_schedules_lists_all_or_the_due(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, listed = run_json(capsys, "schedules")
    assert code == 0 and listed["count"] == 2
    code, due = run_json(capsys, "schedules", "--due")
    assert code == 0 and [s["id"] for s in due["results"]] == [seeded.due_schedule]
    code, org_b = run_json(capsys, "schedules", "--org", "org-b", "--kind", "boefje")
    assert code == 0 and [s["organisation"] for s in org_b["results"]] == ["org-b"]
    code, none = run_json(capsys, "schedules", "--kind", "normalizer")
    assert code == 1 and none["count"] == 0
    code, text, _ = run(capsys, "schedules", "--due")
    assert code == 0 and "dns on Hostname|internet|due.example" in text


# -- dead letters --------------------------------------------------------------------------------------


def test_dead_letters_list_requeue_and_drop(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, listed = run_json(capsys, "dead-letters", "list")
    assert code == 0 and [d["id"] for d in listed["results"]] == [seeded.dead]
    assert listed["results"][0]["reason"] == "lease expired 1 times"
    assert run_json(capsys, "dead-letters", "boefje")[0] == 1  # nothing dead there

    code, out, _ = run(capsys, "dead-letters", "requeue", seeded.dead)
    assert code == 0 and f"{seeded.dead} requeued" in out
    assert seeded.normalizers.dead_count() == 0 and seeded.normalizers.size() == 2
    code, _, err = run(capsys, "dead-letters", "normalizer", "drop", seeded.dead)
    assert code == 4 and "no dead letter" in err


def test_dead_letters_drop(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run_json(capsys, "dead-letters", "normalizer", "drop", seeded.dead)
    assert code == 0 and result == {"id": seeded.dead, "kind": "normalizer", "outcome": "dropped"}
    assert seeded.normalizers.dead_count() == 0 and seeded.normalizers.size() == 1


def test_dead_events_are_listed_beside_dead_tasks_and_replayed_to_their_queue(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, rabbitmq_url: str,
    rabbit_queue: str, rabbit_publisher: TestPublisher,
) -> None:
    """A listener dead-letters what it cannot take to `<queue>.dead` with the reason in the headers; the
    operator sees those events beside the dead tasks, and sends one back once the cause is fixed."""
    monkeypatch.setenv("QUEUE_URI", rabbitmq_url)
    rabbit_publisher.declare(rabbit_queue)
    rabbit_publisher.publish(rabbit_queue, b"{this is not json")
    rabbit_publisher.publish(rabbit_queue, {"operation": "explode", "primary_key": "x", "client_id": "org7"})
    listener = ScanProfileMutationListener(rabbitmq_url, lambda message: None, queue_name=rabbit_queue)
    with running_listener(listener):
        wait_for(lambda: listener.dead_lettered == 2, what="two dead events")

    code, listed = run_json(capsys, "dead-letters", "list", "--queue", rabbit_queue)
    assert code == 0 and [d["id"] for d in listed["results"]] == [seeded.dead]
    first, second = listed["events"]
    assert first["reason"].startswith("malformed: ") and first["queue"] == rabbit_queue
    assert second["reason"].startswith("malformed: operation") and second["organisation"] == "org7"
    assert rabbit_publisher.message_count(f"{rabbit_queue}.dead") == 2, "looking takes nothing away"
    code, out, _ = run(capsys, "dead-letters", "list", "--queue", rabbit_queue)
    assert second["id"] in out and "org7" in out and seeded.dead in out

    code, out, _ = run(capsys, "dead-letters", "requeue", second["id"], "--queue", rabbit_queue)
    assert code == 0 and f"{second['id']} replayed to {rabbit_queue}" in out
    assert rabbit_publisher.message_count(f"{rabbit_queue}.dead") == 1
    replayed = rabbit_publisher.get(rabbit_queue)
    assert replayed is not None and b"explode" in replayed[1]
    assert replayed[0].headers["x-replays"] == 1 and "x-dead-reason" not in replayed[0].headers

    code, result = run_json(capsys, "dead-letters", "events", "drop", "all", "--queue", rabbit_queue)
    assert code == 0 and [event["id"] for event in result["events"]] == [first["id"]]
    assert rabbit_publisher.message_count(f"{rabbit_queue}.dead") == 0
    assert run(capsys, "dead-letters", "events", "drop", "nope", "--queue", rabbit_queue)[0] == 4


def test_dead_letters_usage_errors_exit_2(environment: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "dead-letters", "boefje", "frobnicate")
    assert code == 2 and "neither a kind" in err
    assert run(capsys, "dead-letters", "requeue")[0] == 2


# -- errors that say what to do --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("argv", [["status"], ["tasks"], ["queue", "show", "boefje"], ["dead-letters"]])
def test_an_unreachable_redis_is_named_with_the_setting_to_check(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("SCHEDULER_REDIS_URL", url)
    code, out, err = run(capsys, *argv)
    assert code == 5 and out == ""
    assert f"Redis at {url} is unreachable" in err and "is SCHEDULER_REDIS_URL right" in err


def test_a_bad_setting_exits_2_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SCHEDULER_PQ_MAXSIZE", "-1")
    code, _, err = run(capsys, "status")
    assert code == 2 and "SCHEDULER_PQ_MAXSIZE" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["queue", "show", "nonsense-kind"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_limits_are_set_listed_with_what_they_hold_and_deleted(seeded: Seeded,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    plugin = seeded.boefjes.records.get(seeded.claimed).plugin_id  # type: ignore[union-attr]
    assert run(capsys, "limits", "set", plugin, "--concurrency", "1", "--rate", "5/m")[0] == 0
    code, listed = run_json(capsys, "limits")
    assert code == 0 and listed["results"] == [{"plugin_id": plugin, "concurrency": 1, "rate": "5/m",
                                                "in_flight": 1, "queued": 3, "held": 3}]
    assert "held by limit" in run(capsys, "queue", "show", "boefje")[1]
    assert run(capsys, "limits", "set", plugin, "--rate", "5/w")[0] == 2
    assert run(capsys, "limits", "delete", plugin)[0] == 0
    assert run(capsys, "limits", "delete", plugin)[0] == 4
    assert "no plugin limits" in run(capsys, "limits")[1]
