"""The boefje scheduler against the simulated KAT services; Redis is the lane's (`client`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kat_scheduler.context import AppContext
from kat_scheduler.models import TaskStatus
from kat_scheduler.queues import PushOutcome
from kat_scheduler.rankers import BoefjeRanker, RankingContext
from kat_scheduler.repositories.schedules import from_ms, to_ms
from kat_scheduler.schedulers import BoefjeScheduler
from kat_scheduler.schedulers.deadlines import next_cron
from kat_scheduler.simulation import SimulatedKAT
from tests.factories.kat_world import ORG, mutation
from tests.factories.tasks import FakeClock, boefje_task

HOST = "Hostname|internet|a.example"  # level 2 in the world fixture
IP = "IPAddressV4|internet|192.0.2.1"


@pytest.fixture
def scheduler(context: AppContext) -> BoefjeScheduler:
    return BoefjeScheduler(context)


def queued_boefjes(context: AppContext, ooi: str = HOST) -> set[str]:
    records = context.boefjes.records.get_many(context.boefjes.records.active_by_ooi(ORG, [ooi])[ooi].values())
    return {r.plugin_id for r in records if r.status is TaskStatus.QUEUED}


# -- eligibility -------------------------------------------------------------------------------


def test_an_update_queues_every_eligible_boefje_and_nothing_else(
    scheduler: BoefjeScheduler, context: AppContext
) -> None:
    scheduler.on_mutation(mutation("update", HOST, level=2))
    # "deep" needs level 3, "off" is disabled, "nmap" does not consume Hostname, "on-create" is for creates
    assert queued_boefjes(context) == {"dns", "on-update", "on-both"}


@pytest.mark.parametrize(("level", "expected"), [(0, set()), (1, {"dns"}), (3, {"dns", "deep"})])
def test_the_objects_scan_level_bounds_the_boefjes(
    scheduler: BoefjeScheduler, context: AppContext, level: int, expected: set[str]
) -> None:
    scheduler.on_mutation(mutation("update", HOST, level=level))
    assert queued_boefjes(context) - {"on-update", "on-both"} == expected


def test_an_object_without_scan_profile_gets_nothing(scheduler: BoefjeScheduler, context: AppContext) -> None:
    scheduler.on_mutation(mutation("create", HOST, level=None))
    assert queued_boefjes(context) == set()


def test_a_plugin_enabled_later_is_picked_up(scheduler: BoefjeScheduler, context: AppContext,
                                            kat: SimulatedKAT) -> None:
    kat.katalogus.set_enabled(ORG, "off", True)
    scheduler.on_mutation(mutation("update", HOST, level=1))
    assert "off" in queued_boefjes(context)


def test_our_last_run_within_the_grace_period_holds_the_work_back(
    scheduler: BoefjeScheduler, context: AppContext, wall_clock: FakeClock
) -> None:
    scheduler.on_mutation(mutation("update", HOST, level=1))
    for record in context.boefjes.claim(10):
        context.boefjes.ack(record.id)
    wall_clock.advance(context.settings.grace_period - 60)
    assert scheduler.on_mutation(mutation("update", HOST, level=1)) == []
    wall_clock.advance(120)
    assert queued_boefjes(context) == set()
    scheduler.on_mutation(mutation("update", HOST, level=1))
    assert "dns" in queued_boefjes(context)


def test_bytes_last_run_counts_when_we_have_no_record(
    scheduler: BoefjeScheduler, context: AppContext, kat: SimulatedKAT
) -> None:
    now = datetime.now(UTC)
    kat.bytes.record_run(ORG, "dns", HOST, now - timedelta(hours=2), now - timedelta(hours=1))
    kat.bytes.record_run(ORG, "on-update", HOST, now - timedelta(minutes=5), None)  # still running
    kat.bytes.record_run(ORG, "on-both", HOST, now - timedelta(days=3), now - timedelta(days=2))
    scheduler.on_mutation(mutation("update", HOST, level=1))
    assert queued_boefjes(context) == {"on-both"}


@pytest.mark.parametrize("operation", ["create", "update"])
@pytest.mark.parametrize(("plugin", "runs_on"), [("on-create", {"create"}), ("on-update", {"update"}),
                                                 ("on-both", {"create", "update"}), ("dns", {"create", "update"})])
def test_run_on_limits_boefjes_to_their_operations(
    scheduler: BoefjeScheduler, context: AppContext, operation: str, plugin: str, runs_on: set[str]
) -> None:
    scheduler.on_mutation(mutation(operation, HOST, level=1))
    assert (plugin in queued_boefjes(context)) == (operation in runs_on)
    schedule = context.schedules["boefje"].get_by_hash(boefje_task(org=ORG, boefje=plugin, ooi=HOST).hash)
    assert (schedule is not None) == (operation in runs_on and plugin == "dns")  # run_on work is not rescheduled


def test_the_same_mutation_twice_gives_one_task(scheduler: BoefjeScheduler, context: AppContext) -> None:
    first = scheduler.on_mutation(mutation("update", IP, level=2))
    assert [r.outcome for r in first] == [PushOutcome.QUEUED]
    assert scheduler.on_mutation(mutation("update", IP, level=2)) == []
    assert context.boefjes.size() == 1


# -- deletes and lowered levels -------------------------------------------------------------


def test_a_delete_without_value_cancels_the_objects_queued_tasks_and_schedules(
    scheduler: BoefjeScheduler, context: AppContext
) -> None:
    scheduler.on_mutation(mutation("update", HOST, level=2))
    scheduler.on_mutation(mutation("update", IP, level=2))
    [claimed] = context.boefjes.claim(plugin_ids=["on-both"])
    assert context.schedules["boefje"].of_ooi(ORG, HOST)
    scheduler.on_mutation(mutation("delete", HOST))
    assert queued_boefjes(context) == set()
    assert context.boefjes.records.get(claimed.id).status is TaskStatus.DISPATCHED  # type: ignore[union-attr]
    assert context.schedules["boefje"].of_ooi(ORG, HOST) == []
    assert queued_boefjes(context, IP) == {"nmap"}


def test_a_deleted_object_takes_its_schedules_and_last_runs_with_it(
    scheduler: BoefjeScheduler, context: AppContext
) -> None:
    scheduler.on_mutation(mutation("update", IP, level=2))
    [task] = context.boefjes.claim()
    context.boefjes.ack(task.id)
    assert context.boefjes.records.last_run_ms(task.hash) is not None
    assert context.schedules["boefje"].of_ooi(ORG, IP)
    scheduler.on_mutation(mutation("delete", IP))
    assert context.boefjes.records.last_run_ms(task.hash) is None
    assert context.schedules["boefje"].of_ooi(ORG, IP) == []


def test_a_lowered_level_cancels_what_it_no_longer_permits(scheduler: BoefjeScheduler, context: AppContext) -> None:
    scheduler.on_mutation(mutation("update", HOST, level=3))
    assert {"dns", "deep"} <= queued_boefjes(context)
    scheduler.on_mutation(mutation("update", HOST, level=1))
    assert "deep" not in queued_boefjes(context) and "dns" in queued_boefjes(context)
    scheduler.on_mutation(mutation("update", HOST, level=0))
    assert queued_boefjes(context) == set()


# -- new boefjes --------------------------------------------------------------------------------


def test_a_new_boefje_visits_existing_objects_once_even_across_restarts(
    context: AppContext, kat: SimulatedKAT
) -> None:
    first = BoefjeScheduler(context)
    first.discover_new_boefjes(ORG)  # the first look: every enabled boefje is new
    while first.work_on_new_boefjes(budget=1, page_size=1):
        pass
    # dns: a (level 2) and b (level 1); deep needs 3; nmap: the IP (level 2); none.example has no profile
    assert queued_boefjes(context, HOST) == {"dns"}
    assert queued_boefjes(context, "Hostname|internet|b.example") == {"dns"}
    assert queued_boefjes(context, IP) == {"nmap"}
    size = context.boefjes.size()

    kat.katalogus.set_enabled(ORG, "off", True)
    restarted = BoefjeScheduler(context)
    assert restarted.discover_new_boefjes(ORG) == ["off"]
    assert restarted.discover_new_boefjes(ORG) == []
    while restarted.work_on_new_boefjes(budget=10):
        pass
    assert context.boefjes.size() == size + 2  # "off" on a and b, nothing else again


def test_the_beats_step_for_new_boefjes_visits_pages_of_a_thousand_for_the_time_it_is_given(
    context: AppContext, kat: SimulatedKAT
) -> None:
    """The beat gives the new-boefje passes half a tick: at least one page of 1,000 objects, then as many
    pages as fit, so a million objects do not take three times longer than Octopoes can page them."""
    for n in range(3_500):
        kat.octopoes.add_object(ORG, f"Hostname|internet|h{n}.example", level=2)
    scheduler = BoefjeScheduler(context)
    scheduler.discover_new_boefjes(ORG)
    assert scheduler.work_on_new_boefjes_for(0) == 1_000, "one whole page even when the time is up"
    assert scheduler.work_on_new_boefjes_for(60, keep_going=lambda: False) == 1_000, "no more once it stops leading"
    assert scheduler.work_on_new_boefjes_for(60) > 1_000, "pages back to back while time is left"
    while scheduler.work_on_new_boefjes_for(60):
        pass
    assert all("dns" in queued_boefjes(context, f"Hostname|internet|h{n}.example") for n in (0, 1_234, 3_499))


def test_a_disabled_and_re_enabled_boefje_is_new_again(context: AppContext, kat: SimulatedKAT) -> None:
    scheduler = BoefjeScheduler(context)
    scheduler.discover_new_boefjes(ORG)
    kat.katalogus.set_enabled(ORG, "dns", False)
    assert scheduler.discover_new_boefjes(ORG) == []
    kat.katalogus.set_enabled(ORG, "dns", True)
    assert scheduler.discover_new_boefjes(ORG) == ["dns"]


# -- schedules --------------------------------------------------------------------------------


def test_a_due_schedule_that_is_skipped_still_moves_its_deadline(
    scheduler: BoefjeScheduler, context: AppContext, wall_clock: FakeClock
) -> None:
    scheduler.on_mutation(mutation("update", IP, level=2))
    schedule = context.schedules["boefje"].get_by_hash(boefje_task(org=ORG, boefje="nmap", ooi=IP).hash)
    assert schedule is not None and schedule.deadline_at is not None
    wall_clock.now_ms = to_ms(schedule.deadline_at) + 1  # due, but the first task is still queued
    assert scheduler.run_due_schedules(limit=10) == 1
    moved = context.schedules["boefje"].get(schedule.id)
    assert moved is not None and moved.enabled and moved.deadline_at > schedule.deadline_at  # type: ignore[operator]
    assert scheduler.run_due_schedules(limit=10) == 0
    assert context.boefjes.size() == 1


def test_a_due_schedule_queues_a_rescan(scheduler: BoefjeScheduler, context: AppContext,
                                        wall_clock: FakeClock) -> None:
    scheduler.on_mutation(mutation("update", IP, level=2))
    [first] = context.boefjes.claim()
    context.boefjes.ack(first.id)
    schedule = context.schedules["boefje"].get_by_hash(first.hash)
    wall_clock.now_ms = to_ms(schedule.deadline_at) + 1  # type: ignore[union-attr, arg-type]
    assert scheduler.run_due_schedules(limit=10) == 1
    [rescan] = context.boefjes.claim()
    assert rescan.hash == first.hash and rescan.id != first.id
    assert rescan.score > wall_clock.now_ms  # ranked as a rescan: behind first scans pushed now


@pytest.mark.parametrize("change", ["object gone", "plugin disabled", "level lowered"])
def test_a_schedule_that_no_longer_holds_is_disabled(
    scheduler: BoefjeScheduler, context: AppContext, kat: SimulatedKAT, wall_clock: FakeClock, change: str
) -> None:
    scheduler.on_mutation(mutation("update", IP, level=2))
    [task] = context.boefjes.claim()
    context.boefjes.ack(task.id)
    if change == "object gone":
        kat.world.oois[ORG].pop(IP)
    elif change == "plugin disabled":
        kat.katalogus.set_enabled(ORG, "nmap", False)
    else:
        kat.world.oois[ORG][IP]["scan_profile"]["level"] = 1
    schedule = context.schedules["boefje"].get_by_hash(task.hash)
    wall_clock.now_ms = to_ms(schedule.deadline_at) + 1  # type: ignore[union-attr, arg-type]
    scheduler.run_due_schedules(limit=10)
    assert not context.schedules["boefje"].get(schedule.id).enabled  # type: ignore[union-attr]
    assert context.boefjes.size() == 0


def _queue_again(scheduler: BoefjeScheduler, context: AppContext) -> None:
    """Run the queued nmap task on IP, then have a person run the same work again by hand."""
    [task] = context.boefjes.claim()
    context.boefjes.ack(task.id)
    assert scheduler.push_manual(ORG, "nmap", IP).accepted


def test_a_persons_cron_survives_the_work_being_queued_again(
    scheduler: BoefjeScheduler, context: AppContext, wall_clock: FakeClock
) -> None:
    scheduler.on_mutation(mutation("update", IP, level=2))
    schedules = context.schedules["boefje"]
    schedule = schedules.get_by_hash(boefje_task(org=ORG, boefje="nmap", ooi=IP).hash)
    assert schedule is not None and schedule.person_set == []
    nightly = next_cron("0 3 * * *", from_ms(wall_clock.now_ms))
    schedules.save(schedule.model_copy(update={"schedule": "0 3 * * *", "deadline_at": nightly,
                                               "person_set": ["schedule"]}))  # as PATCH /schedules/{id} does
    wall_clock.advance(7_200)
    _queue_again(scheduler, context)
    kept = schedules.get(schedule.id)
    assert kept is not None and kept.schedule == "0 3 * * *" and kept.enabled
    assert kept.deadline_at == next_cron("0 3 * * *", from_ms(wall_clock.now_ms)), "the cron sets the next run"


def test_a_persons_disable_survives_the_work_being_queued_again_the_schedulers_own_does_not(
    scheduler: BoefjeScheduler, context: AppContext
) -> None:
    scheduler.on_mutation(mutation("update", IP, level=2))
    schedules = context.schedules["boefje"]
    schedule = schedules.get_by_hash(boefje_task(org=ORG, boefje="nmap", ooi=IP).hash)
    assert schedule is not None
    schedules.save(schedule.model_copy(update={"enabled": False, "person_set": ["enabled"]}))
    _queue_again(scheduler, context)
    kept = schedules.get(schedule.id)
    assert kept is not None and not kept.enabled, "a person's enabled=false stays"
    assert schedules.due_count(to_ms(datetime.now(UTC) + timedelta(days=400))) == 0

    schedules.save(kept.model_copy(update={"person_set": []}))  # disabled by the scheduler (work could not run)
    _queue_again(scheduler, context)
    again = schedules.get(schedule.id)
    assert again is not None and again.enabled, "the scheduler's own disable ends when the work may run again"


# -- manual runs --------------------------------------------------------------------------------


def test_a_manual_run_jumps_ahead_of_a_thousand_rescans(scheduler: BoefjeScheduler, context: AppContext,
                                                       wall_clock: FakeClock) -> None:
    ranker = BoefjeRanker()
    overdue = RankingContext(now_ms=wall_clock(), last_run_ms=wall_clock() - 3 * 86_400_000, interval_seconds=86_400)
    context.boefjes.push_many([(boefje_task(org=ORG), ranker.rank(overdue)) for _ in range(1000)])
    result = scheduler.push_manual(ORG, "dns", HOST)
    assert result.outcome is PushOutcome.QUEUED
    [first] = context.boefjes.claim()
    assert first.id == result.task_id and first.score < 0


def test_a_manual_run_skips_the_grace_period_but_not_the_active_rule(
    scheduler: BoefjeScheduler, context: AppContext
) -> None:
    scheduler.on_mutation(mutation("update", HOST, level=2))
    assert scheduler.push_manual(ORG, "dns", HOST).outcome is PushOutcome.DUPLICATE
    [task] = context.boefjes.claim(plugin_ids=["dns"])
    context.boefjes.ack(task.id)
    assert scheduler.push_manual(ORG, "dns", HOST).outcome is PushOutcome.QUEUED  # ran a moment ago


@pytest.mark.parametrize(("boefje_id", "ooi", "error"), [
    ("nope", HOST, LookupError), ("dns", "Hostname|internet|missing.example", LookupError),
    ("deep", HOST, PermissionError)])
def test_a_manual_run_that_cannot_be_done_says_why(
    scheduler: BoefjeScheduler, boefje_id: str, ooi: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        scheduler.push_manual(ORG, boefje_id, ooi)


def test_in_a_batch_the_later_change_of_an_object_has_the_last_word(
    scheduler: BoefjeScheduler, context: AppContext
) -> None:
    scheduler.on_mutations([mutation("update", HOST, level=3), mutation("update", HOST, level=1),
                            mutation("update", IP, level=2), mutation("delete", IP)])
    assert "deep" not in queued_boefjes(context) and "dns" in queued_boefjes(context)
    assert queued_boefjes(context, IP) == set()
