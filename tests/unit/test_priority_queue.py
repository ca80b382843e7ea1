"""The priority queue's behaviour. These tests run on fakeredis here and again, unchanged, on the
real Redis in tests/integration/test_priority_queue_redis.py (the `client` fixture differs)."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
import redis

from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import Change, DeadLetterRequeue, InvalidItem, PriorityQueue, PushOutcome
from kat_scheduler.queues.priority_queue import QUEUE_LUA
from kat_scheduler.rankers import BoefjeRanker, RankingContext
from kat_scheduler.repositories.task_records import RECORD_FIELDS, SEP, StoredFields
from tests.factories.tasks import FakeClock, boefje_task, make_queue, normalizer_task

# -- push ---------------------------------------------------------------------------------------


def test_push_then_claim_gives_the_task_under_a_lease(queue: PriorityQueue, clock: FakeClock) -> None:
    task = boefje_task(org="org1", ooi="Hostname|internet|example.com")
    result = queue.push(task, 100)
    assert result.outcome is PushOutcome.QUEUED and result.task_id == task.id
    assert queue.size() == 1 and queue.counts() == {"org1": 1}

    [claimed] = queue.claim()
    assert claimed.id == task.id and claimed.status is TaskStatus.DISPATCHED and claimed.attempts == 1
    assert claimed.data == task.model_dump(mode="json", exclude_none=True) and claimed.organisation == "org1"
    assert type(task).model_validate(claimed.data) == task
    assert claimed.ooi == "Hostname|internet|example.com" and claimed.plugin_id == "dns-records"
    assert queue.size() == 0 and queue.counts() == {} and queue.in_flight() == 1
    assert queue.records.get(task.id).status is TaskStatus.DISPATCHED  # type: ignore[union-attr]
    assert queue.claim() == []


def test_push_refuses_an_invalid_item_naming_the_field(queue: PriorityQueue) -> None:
    with pytest.raises(InvalidItem) as refused:
        queue.push({"input_ooi": "Hostname|internet|x", "organization": "org1"}, 1)
    assert refused.value.field == "boefje" and "required" in refused.value.reason.lower()
    with pytest.raises(InvalidItem) as wrong_kind:
        queue.push(normalizer_task(), 1)
    assert wrong_kind.value.field == "data"
    assert queue.size() == 0


def test_a_second_active_task_of_one_identity_is_refused(queue: PriorityQueue) -> None:
    first = boefje_task(ooi="Hostname|internet|a.example")
    again = boefje_task(ooi="Hostname|internet|a.example")
    assert queue.push(first, 10).accepted
    for expected_status in ("queued", "dispatched", "running"):
        if expected_status == "dispatched":
            queue.claim()
        if expected_status == "running":
            assert queue.mark_running(first.id) is Change.OK
        result = queue.push(again, 1)
        assert result.outcome is PushOutcome.DUPLICATE
        assert result.task_id == first.id and result.holder_status == expected_status
    assert queue.ack(first.id) is Change.OK
    assert queue.push(again, 1).outcome is PushOutcome.QUEUED  # finished: the identity is free again


def test_the_same_identity_in_another_organisation_is_other_work(queue: PriorityQueue) -> None:
    assert queue.push(boefje_task(org="org1", ooi="Hostname|internet|a.example"), 1).accepted
    assert queue.push(boefje_task(org="org2", ooi="Hostname|internet|a.example"), 1).accepted
    assert queue.size() == 2


def test_push_with_update_reprioritises_the_queued_task(queue: PriorityQueue) -> None:
    slow = boefje_task(ooi="Hostname|internet|slow.example")
    other = boefje_task(ooi="Hostname|internet|other.example")
    queue.push(slow, 500)
    queue.push(other, 100)
    result = queue.push(boefje_task(ooi="Hostname|internet|slow.example"), 50, update=True)
    assert result.outcome is PushOutcome.UPDATED and result.task_id == slow.id
    assert [r.id for r in queue.claim(2)] == [slow.id, other.id]


@pytest.mark.parametrize("organisation", ["org:1", "org{1}", "org\x1f1", "Org1", "o" * 33, "org\udfff"])
def test_organisations_that_would_break_key_names_are_refused(queue: PriorityQueue, organisation: str) -> None:
    payload = {"boefje": {"id": "dns-records"}, "input_ooi": "Hostname|internet|a.example",
               "organization": organisation}
    with pytest.raises(InvalidItem) as refused:
        queue.push(payload, 1)
    assert refused.value.field == "organization"
    assert queue.size() == 0 and queue.records.count() == 0


def test_a_task_id_cannot_be_used_twice(queue: PriorityQueue) -> None:
    task = boefje_task()
    queue.push(task, 1)
    copy = task.model_copy(update={"input_ooi": "Hostname|internet|else.example"})
    assert queue.push(copy, 1).outcome is PushOutcome.ID_TAKEN


def test_maxsize_refuses_automatic_work_but_lets_manual_runs_through(
    client: redis.Redis, key_prefix: str
) -> None:
    queue = make_queue(client, key_prefix, maxsize=2)
    assert all(queue.push(boefje_task(), 100).accepted for _ in range(2))
    assert queue.push(boefje_task(), 100).outcome is PushOutcome.FULL
    assert queue.push(boefje_task(), -5).outcome is PushOutcome.QUEUED  # manual: negative score
    assert queue.push(boefje_task(), -5, manual_may_overflow=False).outcome is PushOutcome.FULL
    assert queue.size() == 3


def test_push_many_returns_one_result_per_item_in_order(queue: PriorityQueue) -> None:
    tasks = [boefje_task(org=f"org{n % 3}") for n in range(2500)]  # more than one script call
    duplicate = boefje_task(org="org0", ooi=tasks[0].input_ooi)
    results = queue.push_many([(t, 7) for t in tasks] + [(duplicate, 7)])
    assert [r.outcome for r in results[:-1]] == [PushOutcome.QUEUED] * 2500
    assert results[-1].outcome is PushOutcome.DUPLICATE and results[-1].task_id == tasks[0].id
    assert queue.size() == 2500 and queue.counts() == {"org0": 834, "org1": 833, "org2": 833}


def test_push_many_validates_everything_before_writing_anything(queue: PriorityQueue) -> None:
    items = [(boefje_task(), 1), ({"boefje": {"id": "x"}}, 1)]
    with pytest.raises(InvalidItem) as refused:
        queue.push_many(items)
    assert refused.value.field == "organization"
    assert queue.size() == 0 and queue.records.count() == 0


def test_a_script_that_refuses_leaves_nothing_half_written(queue: PriorityQueue) -> None:
    from kat_scheduler.queues.priority_queue import _push_item

    good_task = boefje_task()
    good = _push_item(good_task, 5, None, 1000, 1)
    bad = _push_item(boefje_task(), 1, None, 1000, 2)
    bad_score = bad.replace("\x1fqueued\x1f1\x1f", "\x1fqueued\x1fnot-a-number\x1f", 1)
    with pytest.raises(redis.ResponseError, match="not a number"):
        queue._call("push", "0:1:0", good, bad_score)
    with pytest.raises(redis.ResponseError, match="not an id and a record"):
        queue._call("push", "0:1:0", good, bad.split("\x1f", 1)[0] + "\x1fqueued\x1f1\x1forg")
    with pytest.raises(redis.ResponseError, match="options"):
        queue._call("push", "0:yes:0", good)
    assert queue.size() == 0 and queue.records.get(good_task.id) is None and queue.records.count() == 0


# -- claim order ---------------------------------------------------------------------------------


def test_claims_come_out_by_score_and_first_in_first_out_among_equals(queue: PriorityQueue) -> None:
    scores = [random.Random(7).randrange(5) for _ in range(200)]
    tasks = [boefje_task() for _ in scores]
    for task, score in zip(tasks, scores, strict=True):
        queue.push(task, score)
    claimed = queue.claim(200)
    expected = [t.id for _, _, t in sorted(zip(scores, range(200), tasks, strict=True))]
    assert [r.id for r in claimed] == expected


def test_a_claim_can_be_limited_to_plugins(queue: PriorityQueue) -> None:
    queue.push(boefje_task(boefje="dns-records"), 1)
    nmap = boefje_task(boefje="nmap")
    queue.push(nmap, 2)
    assert [r.id for r in queue.claim(5, plugin_ids=["nmap", "shodan"])] == [nmap.id]
    assert queue.claim(5, plugin_ids=["shodan"]) == []
    assert queue.claim(5, plugin_ids=[]) == []
    assert queue.size() == 1


def test_a_filtered_claim_finds_tasks_wherever_they_stand_in_serving_order(queue: PriorityQueue) -> None:
    queue.push_many([(boefje_task(org=f"org{n % 20}", boefje="dns-records"), n) for n in range(2000)])
    deep = [boefje_task(org=org, boefje="nmap") for org in ("org3", "org7", "org3")]
    for task in deep:
        queue.push(task, 10**9)
    claimed = queue.claim(5, plugin_ids=["nmap", "shodan"])
    assert {r.id for r in claimed} == {t.id for t in deep} and all(r.plugin_id == "nmap" for r in claimed)
    assert claimed[0].organisation != claimed[1].organisation  # organisations take turns here too
    assert queue.claim(1, plugin_ids=["nmap"]) == [] and queue.size() == 2000


def test_a_queue_written_before_the_plugin_index_gets_it_at_its_first_filtered_claim(queue: PriorityQueue) -> None:
    tasks = [boefje_task(org=f"org{n % 3}", boefje="nmap" if n % 5 == 0 else "dns-records") for n in range(50)]
    queue.push_many((t, n) for n, t in enumerate(tasks))
    for key in queue.client.scan_iter(f"{queue.base}:q[p]:*"):
        queue.client.delete(key)
    for key in queue.client.scan_iter(f"{queue.base}:po:*"):
        queue.client.delete(key)
    queue.client.delete(f"{queue.base}:plugin_index")
    claimed = queue.claim(20, plugin_ids=["nmap"])
    assert {r.id for r in claimed} == {t.id for t in tasks if t.boefje.id == "nmap"}
    expected = {org: set(queue.client.zrange(f"{queue.base}:q:{org}", 0, -1)) for org in queue.counts()}
    assert _plugin_index(queue) == expected


def _plugin_index(queue: PriorityQueue) -> dict[str, set[str]]:
    """Every organisation's queued members as the plugin index holds them (queue.lua's P:qp, P:po)."""
    held: dict[str, set[str]] = {}
    for plugin in ("dns-records", "nmap", "shodan"):
        for org in queue.client.smembers(f"{queue.base}:po:{plugin}"):
            members = set(queue.client.zrange(f"{queue.base}:qp:{org}:{plugin}", 0, -1))
            assert members, f"{org} is listed for {plugin} without tasks of it"
            held.setdefault(org, set()).update(members)
    return held


def test_the_plugin_index_follows_every_change_of_the_queue(queue: PriorityQueue, clock: FakeClock) -> None:
    rng = random.Random(11)
    tasks = [boefje_task(org=f"org{n % 4}", boefje=rng.choice(["dns-records", "nmap", "shodan"])) for n in range(300)]
    queue.push_many((t, rng.randrange(100)) for t in tasks)
    again = boefje_task(org=tasks[0].organization, boefje=tasks[0].boefje.id, ooi=tasks[0].input_ooi)
    assert queue.push(again, 1, update=True).outcome is PushOutcome.UPDATED
    taken = queue.claim(40) + queue.claim(30, plugin_ids=["nmap"]) + queue.claim(10, plugin_ids=["shodan", "nmap"])
    for record in taken[:20]:
        queue.release(record.id)
    for record in taken[20:30]:
        queue.ack(record.id)
    queue.cancel(*[t.id for t in tasks[200:220]])
    queue.cancel_ooi("org1", tasks[221].input_ooi or "")
    clock.advance(queue.lease_ms / 1000 + 1)
    queue.reap()
    expected = {org: set(queue.client.zrange(f"{queue.base}:q:{org}", 0, -1)) for org in queue.counts()}
    assert _plugin_index(queue) == expected


def test_ack_finishes_the_task_frees_the_identity_and_records_the_run(
    queue: PriorityQueue, client: redis.Redis, clock: FakeClock
) -> None:
    done, broken = boefje_task(), boefje_task()
    queue.push_many([(done, 1), (broken, 2)])
    queue.claim(2)
    clock.advance(5)
    assert queue.ack(done.id) is Change.OK
    assert queue.ack(broken.id, failed=True) is Change.OK
    assert queue.records.get(done.id).status is TaskStatus.COMPLETED  # type: ignore[union-attr]
    assert queue.records.get(broken.id).status is TaskStatus.FAILED  # type: ignore[union-attr]
    assert queue.records.last_run_ms(done.hash) == clock.now_ms
    assert queue.records.active_task_id(done.organization, done.input_ooi, done.hash) is None
    assert queue.in_flight() == 0
    assert 0 < client.pttl(queue.records.record_key(done.id)) <= queue.retention_ms
    assert queue.ack(done.id) == "completed"  # a second ack says why it did nothing
    assert queue.stats() == {"claimed": 2, "completed": 1, "failed": 1}
    assert queue.ack("no-such-task") is Change.UNKNOWN


def test_an_outcome_from_an_older_claim_is_refused(queue: PriorityQueue, clock: FakeClock) -> None:
    task = boefje_task()
    queue.push(task, 1)
    [first] = queue.claim()
    clock.advance(61)
    queue.reap()
    [second] = queue.claim()
    assert second.attempts == first.attempts + 1
    assert queue.ack(task.id, attempt=first.attempts) is Change.STALE
    assert queue.renew(task.id, attempt=first.attempts) is Change.STALE
    assert queue.ack(task.id, attempt=second.attempts) is Change.OK


def test_running_and_release(queue: PriorityQueue) -> None:
    first, second = boefje_task(), boefje_task()
    queue.push_many([(first, 1), (second, 1)])
    assert queue.mark_running(first.id) == "queued"  # not claimed yet
    [claimed] = queue.claim()
    assert queue.mark_running(claimed.id) is Change.OK
    assert queue.records.get(first.id).status is TaskStatus.RUNNING  # type: ignore[union-attr]
    assert queue.release(first.id) is Change.OK
    record = queue.records.get(first.id)
    assert record is not None and record.status is TaskStatus.QUEUED and record.score == 1
    assert queue.in_flight() == 0
    assert [r.id for r in queue.claim(2)] == [first.id, second.id]  # back in its old place


def test_a_renewed_lease_is_not_reaped(queue: PriorityQueue, clock: FakeClock) -> None:
    task = boefje_task()
    queue.push(task, 1)
    queue.claim()
    clock.advance(50)
    assert queue.renew(task.id) is Change.OK
    clock.advance(50)
    assert queue.reap().requeued == []
    clock.advance(11)
    assert queue.reap().requeued == [task.id]


def test_an_expired_lease_returns_the_task_then_dead_letters_it(queue: PriorityQueue, clock: FakeClock) -> None:
    task = boefje_task()
    queue.push(task, 1)
    for attempt in (1, 2):
        [claimed] = queue.claim()
        assert claimed.attempts == attempt
        clock.advance(59)
        assert queue.reap().requeued == []
        clock.advance(2)
        assert queue.reap().requeued == [task.id]
        assert queue.size() == 1
    queue.claim()
    clock.advance(61)
    result = queue.reap()
    assert result.dead_lettered == [task.id] and result.requeued == []
    record = queue.records.get(task.id)
    assert record is not None and record.status is TaskStatus.FAILED and "3 times" in record.reason
    assert [r.id for r in queue.dead_letters()] == [task.id] and queue.dead_count() == 1
    assert queue.stats() == {"claimed": 3, "requeued": 2, "dead_lettered": 1}
    assert queue.records.active_task_id(task.organization, task.input_ooi, task.hash) is None and queue.size() == 0

    assert queue.requeue_dead(task.id) == DeadLetterRequeue(TaskStatus.QUEUED)
    assert queue.dead_count() == 0
    [again] = queue.claim()
    assert again.id == task.id and again.expired_leases == 0
    assert again.attempts == 4, "claims are still counted: a claim's number is its token"


def test_hand_backs_do_not_count_as_attempts_only_expired_leases_do(queue: PriorityQueue, clock: FakeClock) -> None:
    """SCHEDULER_MAX_ATTEMPTS (3 here) counts leases that ran out. A runner or dispatcher that gives a task
    back (a release) has not failed it: two hand-backs and one expiry leave the task queued."""
    task = boefje_task()
    queue.push(task, 1)
    for _ in range(2):
        [claimed] = queue.claim()
        assert queue.release(claimed.id, claimed.attempts) is Change.OK
    queue.claim()
    clock.advance(61)
    assert queue.reap().requeued == [task.id]
    record = queue.records.get(task.id)
    assert record is not None and record.status is TaskStatus.QUEUED and record.expired_leases == 1
    for _ in range(2):
        [claimed] = queue.claim()
        clock.advance(61)
        result = queue.reap()
    assert result.dead_lettered == [task.id]
    record = queue.records.get(task.id)
    assert record is not None and record.reason == "lease expired 3 times" and record.attempts == 5


def test_requeueing_a_dead_letter_respects_the_identity_rule(queue: PriorityQueue, clock: FakeClock) -> None:
    dead = make_dead(queue, clock)
    newer = boefje_task(ooi=dead.input_ooi)
    assert queue.push(newer, 1).accepted
    assert queue.requeue_dead(dead.id) == DeadLetterRequeue(Change.DUPLICATE, newer.id)
    assert queue.drop_dead(dead.id) is Change.DROPPED and queue.dead_count() == 0
    assert queue.drop_dead(dead.id) is Change.NOT_DEAD


def make_dead(queue: PriorityQueue, clock: FakeClock):  # type: ignore[no-untyped-def]
    task = boefje_task()
    queue.push(task, 1)
    for _ in range(queue.max_attempts):
        queue.claim()
        clock.advance(61)
        queue.reap()
    assert queue.dead_count() == 1
    return task


# -- cancelling ---------------------------------------------------------------------------------


def test_cancel_takes_queued_tasks_only(queue: PriorityQueue) -> None:
    queued, claimed = boefje_task(), boefje_task()
    queue.push(claimed, 1)
    queue.push(queued, 2)
    queue.claim()
    assert queue.cancel(queued.id, claimed.id, "nope") == [TaskStatus.CANCELLED, TaskStatus.DISPATCHED, Change.UNKNOWN]
    assert queue.records.get(queued.id).status is TaskStatus.CANCELLED  # type: ignore[union-attr]
    assert queue.size() == 0
    assert queue.records.active_task_id(queued.organization, queued.input_ooi, queued.hash) is None
    assert queue.push(boefje_task(ooi=queued.input_ooi), 1).accepted


def test_cancel_ooi_cancels_the_queued_tasks_of_one_object_in_one_organisation(queue: PriorityQueue) -> None:
    ooi = "Hostname|internet|gone.example"
    mine = [boefje_task(org="org1", ooi=ooi, boefje=b) for b in ("dns-records", "nmap", "shodan")]
    others = [boefje_task(org="org2", ooi=ooi), boefje_task(org="org1")]
    queue.push(mine[0], 0)  # this one is claimed before the cancel
    queue.push_many([(t, 1) for t in mine[1:] + others])
    queue.claim()
    assert sorted(queue.cancel_ooi("org1", ooi)) == sorted(t.id for t in mine[1:])
    assert queue.counts() == {"org1": 1, "org2": 1}
    assert queue.records.get(mine[0].id).status is TaskStatus.DISPATCHED  # type: ignore[union-attr]
    assert queue.cancel_ooi("org1", ooi) == []


# -- looking ------------------------------------------------------------------------------------


def test_list_peek_and_history(queue: PriorityQueue) -> None:
    a = [boefje_task(org="a") for _ in range(3)]
    b = boefje_task(org="b")
    queue.push_many([(a[0], 3), (a[1], 1), (a[2], 2), (b, 9)])
    assert [r.id for r in queue.list_queued("a")] == [a[1].id, a[2].id, a[0].id]
    assert [r.id for r in queue.list_queued("a", offset=1, limit=1)] == [a[2].id]
    assert [r.id for r in queue.peek()] == [a[1].id, b.id]
    assert queue.records.count() == 4
    assert {r.id for r in queue.records.history(limit=10)} == {t.id for t in [*a, b]}
    task = queue.records.get(b.id).to_task()  # type: ignore[union-attr]
    assert task.scheduler_id == "boefje" and task.priority == 9 and task.data["organization"] == "b"


def test_the_queues_of_two_kinds_are_apart(client: redis.Redis, key_prefix: str) -> None:
    boefjes = make_queue(client, key_prefix, "boefje")
    normalizers = make_queue(client, key_prefix, "normalizer")
    boefjes.push(boefje_task(), 1)
    normalizers.push(normalizer_task(), 1)
    assert boefjes.size() == 1 and normalizers.size() == 1
    assert normalizers.claim()[0].kind == "normalizer"
    assert boefjes.size() == 1


# -- fairness and starvation ----------------------------------------------------------------------


def test_organisations_take_turns_whatever_their_backlog(queue: PriorityQueue) -> None:
    queue.push_many([(boefje_task(org="big"), n) for n in range(3000)])
    queue.push_many([(boefje_task(org=f"small{n}"), 10_000) for n in range(4)])
    claimed_orgs = [r.organisation for r in queue.claim(5)]
    assert sorted(claimed_orgs) == ["big", "small0", "small1", "small2", "small3"]


def test_a_late_small_organisation_is_served_within_the_number_of_organisations(
    queue: PriorityQueue,
) -> None:
    queue.push_many([(boefje_task(org=f"org{n % 3}"), n) for n in range(600)])
    queue.claim(7)
    late = boefje_task(org="late")
    queue.push(late, 10**12)  # the worst score there is, arriving last
    organisations_with_work = len(queue.counts())
    claims = [r.id for r in queue.claim(organisations_with_work)]
    assert late.id in claims


def test_a_manual_task_comes_before_every_organisations_turn(queue: PriorityQueue) -> None:
    queue.push_many([(boefje_task(org=f"org{n % 5}"), n) for n in range(100)])
    queue.claim(3)
    manual = boefje_task(org="org4")
    queue.push(manual, -1)
    [first] = queue.claim()
    assert first.id == manual.id


def test_aging_serves_a_rescan_within_its_bound_while_better_work_keeps_arriving(
    queue: PriorityQueue, clock: FakeClock
) -> None:
    """One claim per second; every second a first scan (the best automatic class) arrives. Scores
    that did not age would leave the rescan waiting forever; ours serve it once the clock passes
    its score, so after at most max_delay / arrival interval + backlog claims."""
    ranker = BoefjeRanker()
    backlog = 20
    for _ in range(backlog):
        queue.push(boefje_task(), ranker.rank(RankingContext(now_ms=clock())))
    just_due = RankingContext(now_ms=clock(), last_run_ms=clock() - 86_400_000, interval_seconds=86_400)
    rescan = boefje_task()
    queue.push(rescan, ranker.rank(just_due))
    bound = ranker.max_delay_ms // 1000 + backlog + 1
    claims = 0
    while claims < bound:
        clock.advance(1)
        queue.push(boefje_task(), ranker.rank(RankingContext(now_ms=clock())))
        claims += 1
        if queue.claim()[0].id == rescan.id:
            break
    else:
        pytest.fail(f"the rescan was not served within {bound} claims")
    assert claims > backlog  # it did wait behind better work first


# -- what the API builds on: given payloads, late outcomes, pull leases, the indexes -------------------


def test_a_payload_as_given_is_stored_with_the_fields_the_model_does_not_know(queue: PriorityQueue) -> None:
    task = boefje_task()
    given = {**task.model_dump(mode="json"), "type": "boefje", "deduplication_key": None, "extra": {"n": 1}}
    result = queue.push(task, 5, data=given)
    assert result.record is not None and result.record.data == given
    assert queue.records.get(task.id).data == given  # type: ignore[union-attr]


def test_a_late_outcome_of_a_task_that_went_back_to_the_queue_stands(queue: PriorityQueue,
                                                                    clock: FakeClock) -> None:
    task = boefje_task()
    queue.push(task, 5)
    queue.claim()
    clock.advance(61)
    assert queue.reap().requeued == [task.id]
    assert queue.ack(task.id, attempt=1) == "queued"  # a claim that names its attempt is stale
    assert queue.ack(task.id) is Change.OK  # the runner without one reports its outcome
    assert queue.records.get(task.id).status is TaskStatus.COMPLETED  # type: ignore[union-attr]
    assert queue.size() == 0 and queue.claim() == []


def test_a_task_never_handed_out_cannot_be_finished(queue: PriorityQueue) -> None:
    task = boefje_task()
    queue.push(task, 5)
    assert queue.ack(task.id) == "queued"
    assert queue.size() == 1


def test_a_claim_and_a_running_report_may_set_their_own_lease(queue: PriorityQueue, clock: FakeClock) -> None:
    task = boefje_task()
    queue.push(task, 5)
    queue.claim(lease_seconds=600)
    clock.advance(300)
    assert queue.reap().requeued == []
    assert queue.mark_running(task.id, lease_seconds=600) is Change.OK
    clock.advance(599)
    assert queue.reap().requeued == []
    clock.advance(2)
    assert queue.reap().requeued == [task.id]


def test_each_organisation_has_an_index_of_its_tasks_by_creation(queue: PriorityQueue, clock: FakeClock) -> None:
    first = [boefje_task(org="org1") for _ in range(3)]
    queue.push_many((task, 5) for task in first)
    clock.advance(10)
    later = boefje_task(org="org1")
    other = boefje_task(org="org2")
    queue.push(later, 5)
    queue.push(other, 5)
    records = queue.records
    assert records.count_created(["org1"]) == 4 and records.count_created(["org1", "org2"]) == 5
    assert records.organisations() == ["org1", "org2"] and records.count() == 5
    newest = records.created("org1", "-inf", "+inf", 0, 2)
    assert newest[0].task_id == later.id and newest[0].created_ms == clock.now_ms
    assert records.count_created(["org1"], str(clock.now_ms), "+inf") == 1
    assert {c.task_id for c in records.newest_created(["org1", "org2"], "-inf", "+inf", 2)} == {later.id, other.id}
    assert records.task_ids()[:3] == sorted(t.id for t in first) and len(records.task_ids()) == 5


def test_the_reaps_make_the_indexes_forget_tasks_older_than_the_retention(client: redis.Redis, key_prefix: str,
                                                                          clock: FakeClock) -> None:
    queue = make_queue(client, key_prefix, retention_seconds=100, clock_ms=clock)
    queue.push(boefje_task(org="org1"), 5)
    gone = boefje_task(org="org2")
    queue.push(gone, 5)
    queue.cancel(gone.id)
    clock.advance(101)
    queue.push(boefje_task(org="org1"), 5)
    queue.reap()
    assert queue.records.count_created(["org1"]) == 1
    assert queue.records.organisations() == ["org1"]


def test_hourly_counters_follow_each_task_to_the_hour_and_status_of_its_last_change(queue: PriorityQueue,
                                                                                   clock: FakeClock) -> None:
    hour = clock.now_ms - clock.now_ms % 3_600_000
    kept, moved = boefje_task(org="org1"), boefje_task(org="org2")
    queue.push_many([(kept, 5), (moved, 6)])
    clock.advance(3600)
    queue.claim(2)
    queue.ack(kept.id)
    now_hour = hour + 3_600_000
    then, now = queue.records.hourly_counts([hour, now_hour])
    assert {key: n for key, n in then.items() if n} == {}
    assert {key: n for key, n in now.items() if n} == {("completed", "org1"): 1, ("dispatched", "org2"): 1}


def test_the_lua_field_numbers_and_the_python_record_codec_agree() -> None:
    """queue.lua names the record's fields by number; the Python codec splits the record by RECORD_FIELDS.
    A field added or moved on one side only would shift every field after it."""
    source = QUEUE_LUA.read_text()
    declared = re.search(r"^local ((?:[A-Z]+, )+[A-Z]+) =\s*\n?\s*((?:\d+, )+\d+)\s*$", source, re.MULTILINE)
    assert declared is not None, "queue.lua declares its record fields in one `local A, B = 1, 2` line"
    names = [name.lower() for name in declared.group(1).split(", ")]
    numbers = [int(number) for number in declared.group(2).split(", ")]
    assert numbers == list(range(1, len(names) + 1))
    assert tuple(names) == RECORD_FIELDS == StoredFields._fields
    stored = SEP.join(f"value-of-{name}" for name in RECORD_FIELDS)
    assert StoredFields.split(stored).plugin == "value-of-plugin"


def claim_calls(queue: PriorityQueue, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of tasks each of the queue's claim script calls from now on asks for."""
    calls: list[int] = []
    call = queue._call

    def counting(operation: str, *args: Any) -> Any:
        if operation == "claim":
            calls.append(int(args[0]))
        return call(operation, *args)

    monkeypatch.setattr(queue, "_call", counting)
    return calls


def test_a_large_claim_is_taken_in_short_script_calls_in_serving_order(
        client: redis.Redis, key_prefix: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    whole, chunked = (make_queue(client, f"{key_prefix}-{name}", clock_ms=clock) for name in ("whole", "chunked"))
    for n in range(23):
        ooi = f"Hostname|internet|h{n}.example"
        for queue in (whole, chunked):
            queue.push(boefje_task(org=f"org{n % 3}", boefje="nmap" if n % 2 else "dns", ooi=ooi), n)
    in_one_call = [(r.organisation, r.ooi) for r in whole.claim(100, plugin_ids=["nmap"])]
    monkeypatch.setattr("kat_scheduler.queues.priority_queue.CLAIM_CHUNK", 4)
    calls = claim_calls(chunked, monkeypatch)
    in_chunks = [(r.organisation, r.ooi) for r in chunked.claim(100, plugin_ids=["nmap"])]
    assert in_chunks == in_one_call and len(in_chunks) == 11
    assert calls == [4, 4, 4]  # the third call came back short: nothing more to take


def test_a_claim_taken_one_by_one_stops_at_its_bound_and_goes_on(
        client: redis.Redis, key_prefix: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """With weights in play a claim is taken a task at a time, at most 100 a script call; the reply says
    when it stopped there, and the claim goes on with another call."""
    queue = make_queue(client, key_prefix, clock_ms=clock)
    queue.set_weights({"org0": 1})
    for n in range(230):
        queue.push(boefje_task(org=f"org{n % 3}", boefje="nmap", ooi=f"Hostname|internet|h{n}.example"), n)
    calls = claim_calls(queue, monkeypatch)
    assert len({r.id for r in queue.claim(230, plugin_ids=["nmap"])}) == 230
    assert calls == [230, 130, 30]


@pytest.mark.parametrize("seed", range(8))
def test_a_filtered_claim_in_bulk_takes_what_a_claim_one_by_one_takes(
        client: redis.Redis, key_prefix: str, clock: FakeClock, seed: int) -> None:
    """With no limits, siblings or weights in play a filtered claim is taken in bulk; a weight of 1 (which
    changes no turn) sends the same claims one task at a time. Both take the same tasks in the same order,
    write the same records and leave the same queue behind, manual tasks and several plugins included."""
    rng = random.Random(seed)
    bulk, one_by_one = (make_queue(client, f"{key_prefix}-{name}", clock_ms=clock) for name in ("bulk", "single"))
    one_by_one.set_weights({"org0": 1})
    plugins = ["nmap", "dns", "shodan"]
    for n in range(rng.randint(30, 150)):
        task = boefje_task(org=f"org{rng.randrange(7)}", boefje=rng.choice(plugins),
                           ooi=f"Hostname|internet|h{n}.example")
        score = rng.randint(-5, 60)  # below 0: a manual run
        assert bulk.push(task, score).accepted and one_by_one.push(task, score).accepted
        clock.advance(rng.choice([0, 0, 1]))
    for _ in range(6):
        wanted, limit = rng.sample(plugins, rng.randint(1, 2)), rng.randint(1, 40)
        taken, expected = bulk.claim(limit, plugin_ids=wanted), one_by_one.claim(limit, plugin_ids=wanted)
        assert [(r.id, r.status, r.attempts, r.modified_ms, r.history_text) for r in taken] == \
            [(r.id, r.status, r.attempts, r.modified_ms, r.history_text) for r in expected]
        assert all(r.plugin_id in wanted for r in taken)
        clock.advance(1)
    assert bulk.counts() == one_by_one.counts() and bulk.size() == one_by_one.size()
    assert bulk.oldest_pushed_ms_by_organisation() == one_by_one.oldest_pushed_ms_by_organisation()
    hours = [clock.now_ms - clock.now_ms % 3_600_000]
    assert bulk.records.hourly_counts(hours) == one_by_one.records.hourly_counts(hours)
    clock.advance(bulk.lease_ms / 1000 - 1)  # the leases of the last claim end now
    requeued = bulk.reap().requeued
    assert requeued and requeued == one_by_one.reap().requeued
    assert [r.id for r in bulk.claim(1000)] == [r.id for r in one_by_one.claim(1000)]  # the order left behind


def test_a_client_s_own_fields_come_back_exactly_from_a_claim_also_integers_beyond_64_bits(
        queue: PriorityQueue) -> None:
    task = boefje_task(org="org1", boefje="nmap")
    given = {**task.model_dump(mode="json", exclude_none=True), "big": 2**70, "small": 7, "ratio": 0.5}
    queue.push(task, 1, data=given)
    [claimed] = queue.claim(1, plugin_ids=["nmap"])
    assert claimed.data == given and type(claimed.data["big"]) is int


def test_hourly_counters_are_kept_per_organisation_and_read_with_those_of_the_earlier_layout(
        client: redis.Redis, queue: PriorityQueue, clock: FakeClock) -> None:
    """The counters behind /tasks/stats live in one small hash per hour and organisation. A queue written
    before that kept one hash per hour of "<status>:<org>" fields: those are read as well until they expire."""
    hour = clock.now_ms - clock.now_ms % 3_600_000
    client.hset(f"{queue.base}:hour:{hour}", mapping={"completed:org1": "2", "failed:org3": "1"})  # the earlier layout
    queue.push(boefje_task(org="org1"), 1)
    queue.push(boefje_task(org="org2"), 1)
    queue.claim(1)
    assert queue.records.hourly_counts([hour]) == [
        {("completed", "org1"): 2, ("failed", "org3"): 1, ("queued", "org1"): 0, ("dispatched", "org1"): 1,
         ("queued", "org2"): 1}]
    assert queue.records.hourly_counts([hour], "org1") == [
        {("completed", "org1"): 2, ("queued", "org1"): 0, ("dispatched", "org1"): 1}]
    assert queue.records.hourly_counts([hour - 3_600_000]) == [{}]


def test_the_oldest_wait_is_the_longest_waiter_wherever_it_stands_in_the_queue(
        queue: PriorityQueue, clock: FakeClock) -> None:
    """A rescan's score carries up to an hour of delay, so first scans pushed half an hour later still sort
    ahead of it: the oldest wait is the rescan's, however many tasks stand before it."""
    assert queue.oldest_pushed_ms() is None
    rescan = boefje_task(org="org1", ooi="Hostname|internet|rescan.example")
    queue.push(rescan, clock.now_ms + 3_600_000)
    pushed = clock.now_ms
    clock.advance(1_800)
    for n in range(20):
        queue.push(boefje_task(org="org1", ooi=f"Hostname|internet|first{n}.example"), clock.now_ms)
    queue.push(boefje_task(org="org2"), clock.now_ms)
    assert queue.oldest_pushed_ms() == pushed
    assert queue.oldest_pushed_ms_by_organisation() == {"org1": pushed, "org2": clock.now_ms}
    first_scans = queue.claim(21)
    assert rescan.id not in {record.id for record in first_scans}
    assert queue.oldest_pushed_ms() == pushed
    [last] = queue.claim()
    assert last.id == rescan.id and queue.oldest_pushed_ms() is None
    assert queue.release(last.id, last.attempts) is Change.OK
    assert queue.oldest_pushed_ms() == pushed, "a task handed back waits since it was first pushed"


def test_a_queue_written_before_the_wait_index_gets_it_at_its_first_reap(queue: PriorityQueue,
                                                                         clock: FakeClock) -> None:
    pushed = clock.now_ms
    queue.push(boefje_task(org="org1"), pushed + 3_600_000)
    clock.advance(60)
    queue.push(boefje_task(org="org1"), clock.now_ms)
    queue.client.delete(f"{queue.base}:w:org1", f"{queue.base}:wait_index")  # as a queue of an older version
    assert queue.oldest_pushed_ms() is None
    queue.reap()
    assert queue.oldest_pushed_ms() == pushed


def test_a_queue_filled_from_empty_is_never_walked_to_build_its_indexes(queue: PriorityQueue,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    queue.push_many((boefje_task(org=f"org{n % 3}"), n) for n in range(30))
    original_call = queue._call
    walked: list[int] = []

    def counting(operation: str, *args: Any) -> Any:
        before = queue.client.get(f"{queue.base}:wait_index"), queue.client.get(f"{queue.base}:plugin_index")
        reply = original_call(operation, *args)
        walked.append(before != ("1", "2"))
        return reply

    monkeypatch.setattr(queue, "_call", counting)
    queue.reap()
    assert [record.plugin_id for record in queue.claim(1, plugin_ids=["dns-records"])] == ["dns-records"]
    assert walked == [False, False]  # both indexes were marked complete by the first push


def test_dead_letters_older_than_their_retention_are_dropped_by_the_reaps(
        client: redis.Redis, key_prefix: str, clock: FakeClock) -> None:
    queue = make_queue(client, key_prefix, dead_letter_retention_seconds=3_600, retention_seconds=100, lease_seconds=60,
                       clock_ms=clock)
    dead = make_dead(queue, clock)
    clock.advance(3_500)
    queue.reap()
    assert queue.dead_count() == 1
    clock.advance(101)
    queue.reap()
    assert queue.dead_count() == 0
    assert queue.records.get(dead.id) is not None, "its record stays for the task retention"
    assert 0 < queue.client.pttl(queue.records.record_key(dead.id)) <= 100_000


def test_a_queue_that_keeps_no_last_runs_writes_none(client: redis.Redis, key_prefix: str) -> None:
    """Normalizer work is new with every raw file: one last run per file would only grow."""
    for keeps in (True, False):
        queue = make_queue(client, f"{key_prefix}-{keeps}", keep_last_runs=keeps)
        task = boefje_task()
        queue.push(task, 1)
        [claimed] = queue.claim()
        assert queue.ack(claimed.id) is Change.OK
        assert (queue.records.last_run_ms(task.hash) is not None) is keeps


def test_a_reap_of_pulled_tasks_leaves_the_dispatchers_tasks_to_them(queue: PriorityQueue, clock: FakeClock) -> None:
    """The API reaps before a pop, and hears no Celery events: a forwarded task whose lease ran out during a
    Redis outage may have finished, which only a dispatcher knows (it writes what it heard, then reaps)."""
    queue.push(boefje_task(), 1)
    queue.push(boefje_task(), 2)
    [forwarded] = queue.dispatch(1, slots=1)
    [pulled] = queue.claim(1)
    clock.advance(61)
    assert queue.reap(pulled_only=True).requeued == [pulled.id]
    assert queue.reap().requeued == [forwarded.id]
