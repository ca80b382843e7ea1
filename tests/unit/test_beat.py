"""The beat scheduler class: leadership between beats, bounded passes, static entries beside ours."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery

from kat_scheduler.beat import KatScheduler
from kat_scheduler.config import load_settings
from kat_scheduler.context import AppContext
from kat_scheduler.schedulers import BoefjeScheduler
from tests.factories.kat_world import ORG, mutation
from tests.factories.tasks import FakeClock, boefje_task
from tests.factories.waiting import wait_for


def lead(beat: KatScheduler) -> bool:
    """One tick; whether the beat leads after it."""
    beat.tick()
    return beat.leadership.is_leader


@pytest.fixture
def beat_context(context: AppContext) -> AppContext:
    """The scheduler test context with a short leader lease and fast ticks."""
    context.settings = load_settings(**{**context.settings.model_dump(), "beat_lease_seconds": 0.3,
                                        "beat_tick_seconds": 0.05, "schedule_batch_size": 5})
    return context


@pytest.fixture
def make_beat(beat_context: AppContext) -> Iterator[Callable[..., KatScheduler]]:
    made: list[KatScheduler] = []

    def make(**conf: Any) -> KatScheduler:
        app = Celery("beat-test", broker="memory://", set_as_current=False)
        app.conf.update(conf)
        beat = KatScheduler(app, context=beat_context)
        made.append(beat)
        return beat

    yield make
    for beat in made:
        beat.close()


def test_one_of_two_beats_leads_and_the_other_takes_over_when_it_dies(make_beat: Callable[..., KatScheduler]) -> None:
    first, second = make_beat(), make_beat()
    first.tick()
    second.tick()
    assert first.leadership.is_leader and not second.leadership.is_leader
    lease = first.leadership.lease_ms / 1000
    # the leader dies: it stops ticking and renewing, and never releases its lease
    first.leadership.stop_keeping()
    took = wait_for(lambda: lead(second), 4 * lease, "a takeover")
    assert took < 2 * lease
    first.tick()
    assert not first.leadership.is_leader  # the old leader, back, stands by


def test_a_leader_busy_for_longer_than_its_lease_keeps_it(make_beat: Callable[..., KatScheduler]) -> None:
    leader, standby = make_beat(), make_beat()
    leader.tick()
    lease = leader.leadership.lease_ms / 1000
    busy_until = time.monotonic() + 3 * lease  # the leader is stuck in one long step, not ticking
    while time.monotonic() < busy_until:
        standby.tick()
        assert not standby.leadership.is_leader and leader.leadership.is_leader
        time.sleep(0.02)


def test_close_hands_the_lease_over_at_once_and_is_idempotent(make_beat: Callable[..., KatScheduler]) -> None:
    first, second = make_beat(), make_beat()
    first.tick()
    first.close()
    first.close()
    second.tick()
    assert second.leadership.is_leader


def test_a_leader_that_lost_its_lease_steps_down_instead_of_scheduling(
    make_beat: Callable[..., KatScheduler], beat_context: AppContext
) -> None:
    beat = make_beat()
    beat.tick()
    beat_context.redis.set(beat.leadership.key, "someone-else", px=10_000)
    BoefjeScheduler(beat_context).on_mutation(mutation("update", "IPAddressV4|internet|192.0.2.1", level=2))
    beat.scheduling_pass()
    assert not beat.leadership.is_leader
    beat.tick()
    assert not beat.leadership.is_leader


def test_only_the_leader_runs_static_entries(make_beat: Callable[..., KatScheduler],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(KatScheduler, "apply_async", lambda self, entry, *a, **k: sent.append(entry.name))
    conf = {"beat_schedule": {"ping": {"task": "ping", "schedule": 0.01}}}
    leader, standby = make_beat(**conf), make_beat(**conf)
    wait_for(lambda: [lead(leader), lead(standby)] and len(sent) >= 3, 5, "static entries")
    assert standby.leadership.is_leader is False and set(sent) == {"ping"}
    count = len(sent)
    for _ in range(5):
        standby.tick()
    assert len(sent) == count


def test_a_pass_is_bounded_and_the_next_pass_continues(make_beat: Callable[..., KatScheduler],
                                                       beat_context: AppContext,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kat_scheduler.schedulers.boefje.NEW_BOEFJE_PAGE", 1)
    beat_context.settings = load_settings(**{**beat_context.settings.model_dump(), "beat_tick_seconds": 0.001})
    beat = make_beat()
    beat.tick()  # the first pass also looks at the organisation's boefjes: every enabled one is new
    assert beat_context.boefjes.size() == 1  # one page (of one object here) when half a tick is up
    [boefjes] = [s for s in beat.schedulers if isinstance(s, BoefjeScheduler)]
    assert boefjes.catalogue.jobs()
    wait_for(lambda: [lead(beat)] and not boefjes.catalogue.jobs(), 10, "the passes to finish")
    queued = beat_context.boefjes.counts()
    assert queued == {ORG: 3}  # dns on a and b, nmap on the IP


def test_a_beat_that_starts_to_lead_holds_its_reaps_while_the_dispatchers_catch_up(
        make_beat: Callable[..., KatScheduler], beat_context: AppContext, wall_clock: FakeClock) -> None:
    queue = beat_context.boefjes
    queue.push(boefje_task(), 1)
    [claimed] = queue.claim(1, lease_seconds=1)
    wall_clock.advance(2)  # its lease ran out
    beat = make_beat()
    assert lead(beat)
    beat.scheduling_pass()
    assert queue.records.get(claimed.id).status == "dispatched"  # type: ignore[union-attr]  # held
    beat._reap_from = 0.0  # the hold is over (REAP_HOLD_SECONDS after it started to lead)
    beat.scheduling_pass()
    assert queue.records.get(claimed.id).status == "queued"  # type: ignore[union-attr]
