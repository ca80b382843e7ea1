"""Plugin limits in the queue: a limited plugin's tasks wait in order while other plugins' tasks and
other organisations go past them; concurrency counts claimed tasks until they end or go back; a rate
counts claims within its window."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from kat_scheduler import plugin_limits
from kat_scheduler.commands import queue_show
from kat_scheduler.config import load_settings
from kat_scheduler.context import AppContext
from kat_scheduler.metrics import register
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.queues.limits import BadLimit, PluginLimit, rate_parts
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from tests.factories.tasks import FakeClock, boefje_task


def push(queue: PriorityQueue, org: str, boefje: str, score: int) -> str:
    return queue.push(boefje_task(org=org, boefje=boefje), score).task_id


def plugins(records: list) -> list[str]:  # type: ignore[type-arg]
    return [record.plugin_id for record in records]


def test_limits_are_spelled_as_operators_write_them() -> None:
    assert rate_parts("5/s") == (5, 1000) and rate_parts("100 / d") == (100, 86_400_000)
    assert PluginLimit.decode(PluginLimit(concurrency=2, rate="3/m").encode()) == PluginLimit(2, "3/m")
    for bad in ("0/s", "5/w", "five/s", "5"):
        with pytest.raises(BadLimit):
            PluginLimit(rate=bad)
    with pytest.raises(BadLimit):
        PluginLimit()
    with pytest.raises(BadLimit):
        PluginLimit(concurrency=0)


def test_a_busy_plugin_waits_in_order_while_the_rest_goes_past(queue: PriorityQueue) -> None:
    shodan = [push(queue, "org1", "shodan", score) for score in (1, 2, 3)]
    others = [push(queue, "org1", "dns-records", score) for score in (10, 11)]
    assert queue.set_limit("shodan", PluginLimit(concurrency=1)) == "set"
    first = queue.claim(3)
    assert [r.id for r in first] == [shodan[0], *others]  # one shodan, then what is not held
    assert queue.claim(1) == []  # only held shodan tasks are left
    assert queue.ack(first[0].id) == "ok"  # the running one ends: room for the next, in order
    assert [r.id for r in queue.claim(5)] == [shodan[1]]
    [state] = queue.limit_states()
    assert (state.plugin_id, state.in_flight, state.queued, state.room, state.held) == ("shodan", 1, 1, 0, 1)


def test_a_held_organisation_keeps_its_turn_and_others_are_served(queue: PriorityQueue) -> None:
    held = [push(queue, "org-a", "shodan", score) for score in (1, 2)]
    free = push(queue, "org-b", "dns-records", 5)
    queue.set_limit("shodan", PluginLimit(concurrency=1))
    assert [r.id for r in queue.claim(3)] == [held[0], free]
    assert queue.counts() == {"org-a": 1}


def test_a_release_or_an_expired_lease_gives_the_room_back(queue: PriorityQueue, clock: FakeClock) -> None:
    [a, b] = [push(queue, "org1", "shodan", score) for score in (1, 2)]
    queue.set_limit("shodan", PluginLimit(concurrency=1))
    [claimed] = queue.claim(2)
    assert claimed.id == a and queue.release(a, claimed.attempts) == "ok"
    [again] = queue.claim(2)
    assert again.id == a  # back at its place, ahead of b
    clock.advance(61)  # past the 60 s lease
    assert queue.reap().requeued == [a]
    assert [r.id for r in queue.claim(1)] == [a]
    assert queue.claim(1) == [] and b in {r.id for r in queue.list_queued("org1")}


def test_a_rate_counts_starts_in_its_window_and_says_when_it_opens(queue: PriorityQueue, clock: FakeClock) -> None:
    for score in range(6):
        push(queue, "org1", "shodan", score)
    queue.set_limit("shodan", PluginLimit(rate="2/s"))
    first = queue.claim(5)
    assert len(first) == 2 and queue.limit_opens_at_ms is None  # they have not started: no window yet
    clock.advance(0.3)
    for record in first:
        assert queue.mark_running(record.id, record.attempts) == "ok"  # the window starts at their start
    clock.advance(0.7)
    assert queue.claim(5) == []
    # the window counts a twentieth longer than a second: starts are heard a little after they happen
    assert queue.limit_opens_at_ms == clock() - 700 + 1050
    clock.advance(0.35)
    second = queue.claim(5)
    assert len(second) == 2  # the window moved on: two more
    assert queue.ack(second[0].id) == "ok"  # one that ends without saying it started counts from its end
    clock.advance(1.1)
    [state] = queue.limit_states()
    assert state.claimed_in_window == 1 and state.room == 1  # the one still to start


def test_a_filtered_pop_honours_the_limit_too(queue: PriorityQueue) -> None:
    for score in (1, 2, 3):
        push(queue, "org1", "shodan", score)
    nmap = push(queue, "org2", "nmap", 9)
    queue.set_limit("shodan", PluginLimit(concurrency=2))
    # organisations take turns among the plugins asked for; the third shodan task is held
    assert plugins(queue.claim(5, plugin_ids=["shodan", "nmap"])) == ["shodan", "nmap", "shodan"]
    assert queue.claim(5, plugin_ids=["shodan"]) == []
    assert nmap not in {r.id for r in queue.list_queued("org2")}


def test_a_limit_set_while_tasks_run_counts_them(queue: PriorityQueue) -> None:
    for score in (1, 2, 3):
        push(queue, "org1", "shodan", score)
    running = queue.claim(2)
    assert queue.set_limit("shodan", PluginLimit(concurrency=2)) == "set"
    assert queue.claim(1) == []  # the two claimed before the limit fill it
    assert queue.ack(running[0].id) == "ok"
    assert len(queue.claim(1)) == 1


def test_a_deleted_limit_frees_the_plugin_and_the_configuration_does_not_override_the_api(
        queue: PriorityQueue) -> None:
    for score in (1, 2, 3):
        push(queue, "org1", "shodan", score)
    assert queue.set_limit("shodan", PluginLimit(concurrency=1)) == "set"
    assert queue.set_limit("shodan", PluginLimit(concurrency=5), configured=True) == "kept"
    assert queue.limits() == {"shodan": PluginLimit(concurrency=1)}
    assert len(queue.claim(3)) == 1
    assert queue.delete_limit("shodan") == "deleted"
    assert len(queue.claim(3)) == 2
    assert queue.limits() == {} and queue.delete_limit("shodan", configured=True) == "kept"


def test_limits_of_many_plugins_leave_unlimited_work_in_serving_order(queue: PriorityQueue) -> None:
    for n in range(100):
        queue.set_limit(f"paid-{n}", PluginLimit(concurrency=1))
    pushed = [push(queue, f"org{n % 3}", "dns-records", n) for n in range(9)]
    assert [r.id for r in queue.claim(9)] == pushed  # turns between organisations, as without limits


# -- through the API ---------------------------------------------------------------------------------


@pytest.fixture
def api(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context, ApiSettings(api_token=None, reap_interval_seconds=0))) as client:
        yield client


def pop_plugins(api: TestClient, limit: int) -> list[str]:
    popped = api.post(f"/schedulers/boefje/pop?limit={limit}").json()["results"]
    return [task["data"]["boefje"]["id"] for task in popped]


def test_a_limit_changed_through_the_api_holds_from_the_next_pop(api: TestClient, context: AppContext) -> None:
    for n in range(6):
        push(context.boefjes, f"org{n % 3}", "shodan", n)
    assert api.put("/limits/shodan", json={"concurrency": 1}).status_code == 200
    assert pop_plugins(api, 6) == ["shodan"]
    answer = api.get("/limits").json()
    assert answer == [{"plugin_id": "shodan", "concurrency": 1, "rate": None, "in_flight": 1, "queued": 5,
                       "held": 5}]
    assert api.put("/limits/shodan", json={"concurrency": 3, "rate": "10/m"}).json()["held"] == 0
    assert pop_plugins(api, 6) == ["shodan", "shodan"]
    assert api.delete("/limits/shodan").status_code == 204
    assert api.delete("/limits/shodan").status_code == 404
    assert pop_plugins(api, 6) == ["shodan"] * 3
    assert api.get("/limits").json() == []


@pytest.mark.parametrize("body", [{}, {"concurrency": 0}, {"rate": "5/w"}, {"rate": "0/s"}, {"other": 1}])
def test_a_limit_that_cannot_be_honoured_is_refused(api: TestClient, body: dict[str, object]) -> None:
    answer = api.put("/limits/shodan", json=body)
    assert answer.status_code == 400, answer.text
    assert api.get("/limits").json() == []


def test_configured_limits_apply_and_leave_what_the_api_decided(context: AppContext) -> None:
    context.settings = load_settings(**{**context.settings.model_dump(), "plugin_limits": {
        "shodan": {"concurrency": 1}, "nmap": {"rate": "4/h"}}})
    plugin_limits.apply_configured(context)
    assert context.boefjes.limits() == {"shodan": PluginLimit(1), "nmap": PluginLimit(rate="4/h")}
    plugin_limits.set_limit(context, "shodan", PluginLimit(concurrency=5))
    only_shodan = {"shodan": {"concurrency": 2}}
    context.settings = load_settings(**{**context.settings.model_dump(), "plugin_limits": only_shodan})
    plugin_limits.apply_configured(context)  # nmap left the configuration; shodan is the API's now
    assert context.normalizers.limits() == {"shodan": PluginLimit(concurrency=5)}


def test_held_tasks_are_shown_as_such_by_the_cli_and_the_metrics(context: AppContext) -> None:
    for score in (1, 2):
        push(context.boefjes, "org1", "shodan", score)
    push(context.boefjes, "org1", "dns-records", 3)
    plugin_limits.set_limit(context, "shodan", PluginLimit(concurrency=1))
    assert plugins(context.boefjes.claim(1)) == ["shodan"]
    shown = queue_show.gather(context.boefjes, None, 10, 10)
    assert [(t["plugin"], t["held_by_limit"]) for org in shown["organisations"] for t in org["tasks"]] == [
        ("shodan", True), ("dns-records", False)]
    assert "held by limit" in queue_show.render(shown)
    registry = CollectorRegistry(auto_describe=False)
    register(context, registry)
    assert 'kat_scheduler_held_by_limit{kind="boefje",plugin="shodan"} 1.0' in generate_latest(registry).decode()
