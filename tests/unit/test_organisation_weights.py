"""Weighted turns: an organisation of weight w is served w times in a row per turn, the others wait at
most the sum of the others' weights, and manual runs still go first."""

from __future__ import annotations

from itertools import pairwise

from kat_scheduler import organisation_weights
from kat_scheduler.config import load_settings
from kat_scheduler.context import AppContext
from kat_scheduler.queues import PriorityQueue
from tests.factories.tasks import boefje_task


def fill(queue: PriorityQueue, org: str, count: int, score: int = 100) -> None:
    queue.push_many([(boefje_task(org=org), score) for _ in range(count)])


def served(queue: PriorityQueue, count: int) -> list[str]:
    return [record.organisation for record in queue.claim(count)]


def test_weights_three_to_one_give_three_claims_to_one_and_the_light_one_waits_within_the_bound(
        queue: PriorityQueue) -> None:
    fill(queue, "org-big", 300)
    fill(queue, "org-small", 300)
    assert queue.set_weights({"org-big": 3}) == "set"
    order = served(queue, 200)
    assert order.count("org-big") == 150 and order.count("org-small") == 50
    small_at = [n for n, org in enumerate(order) if org == "org-small"]
    gaps = [later - earlier for earlier, later in pairwise(small_at)]
    assert max(gaps) - 1 <= 3  # at most the others' weights (3) claims between two of its own


def test_every_organisation_is_served_within_the_sum_of_the_others_weights(queue: PriorityQueue) -> None:
    weights = {"a": 4, "b": 2}
    for org in ("a", "b", "c", "d"):
        fill(queue, org, 100)
    queue.set_weights(weights)
    order = served(queue, 160)
    for org in ("a", "b", "c", "d"):
        others = sum(weights.get(other, 1) for other in ("a", "b", "c", "d") if other != org)
        at = [n for n, who in enumerate(order) if who == org]
        assert at[0] <= others and all(later - earlier - 1 <= others for earlier, later in pairwise(at))
    assert order.count("a") == 2 * order.count("b") == 4 * order.count("c")


def test_a_manual_run_still_goes_first(queue: PriorityQueue) -> None:
    fill(queue, "org-big", 10)
    fill(queue, "org-small", 10)
    queue.set_weights({"org-big": 5})
    assert served(queue, 1) == ["org-big"]
    manual = queue.push(boefje_task(org="org-small"), -1).task_id
    assert [record.id for record in queue.claim(1)] == [manual]
    assert served(queue, 4) == ["org-big"] * 4  # the big one's turn goes on where it was


def test_without_weights_turns_alternate_as_before(queue: PriorityQueue) -> None:
    fill(queue, "a", 5)
    fill(queue, "b", 5)
    assert queue.set_weights({}) == "same"
    assert served(queue, 6) == ["a", "b", "a", "b", "a", "b"]


def test_the_configured_weights_reach_every_queue(context: AppContext) -> None:
    context.settings = load_settings(**{**context.settings.model_dump(), "organisation_weights": {"org-big": 3}})
    organisation_weights.apply_configured(context)
    assert {kind: queue.weights() for kind, queue in context.queues.items()} == {
        kind: {"org-big": 3} for kind in context.queues}
    context.settings = load_settings(**{**context.settings.model_dump(), "organisation_weights": {}})
    organisation_weights.apply_configured(context)
    assert context.boefjes.weights() == {}
