"""The worked examples of docs/extending.md, run: a new ranker and a new scheduler, each one class and
one registration. The code between the `example` markers appears verbatim in docs/extending.md."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest

from kat_scheduler.config import load_settings
from kat_scheduler.context import AppContext
from kat_scheduler.models import BoefjeTask
from kat_scheduler.queues import PushOutcome, PushResult
from kat_scheduler.rankers import MANUAL_LEAD_MS, RANKERS, Ranker, RankingContext, register
from kat_scheduler.schedulers import SCHEDULERS, Scheduler
from kat_scheduler.schedulers import register as register_scheduler
from tests.factories.tasks import FakeClock

EXTENDING_MD = Path(__file__).resolve().parents[2] / "docs" / "extending.md"

# --- example: ranker ---
STALE_MAX_DELAY_MS = 30 * 60 * 1000  # a result made just now waits half an hour behind a stale one


@register
class StaleFirstRanker(Ranker):
    """The older the last result of this work, the sooner it runs again; never run: at once."""

    name = "stale-first"
    max_delay_ms = STALE_MAX_DELAY_MS

    def delay_ms(self, context: RankingContext) -> int:
        if context.last_run_ms is None:
            return 0
        age_ms = max(0, context.now_ms - context.last_run_ms)
        return max(0, STALE_MAX_DELAY_MS - age_ms)
# --- end example: ranker ---


# --- example: scheduler ---
@register_scheduler
class WatchlistScheduler(Scheduler):
    """Runs one boefje on a watch list of objects whenever asked (from a cron job, say), stalest
    result first. Its tasks are boefje tasks, so they go on the boefje queue to the boefje runners."""

    kind = "watchlist"
    queue_kind = "boefje"  # its tasks are boefje tasks: they go to the boefje queue and runners
    ranker = StaleFirstRanker()

    def run(self, organisation: str, boefje_id: str, oois: list[str]) -> list[PushResult]:
        tasks = [BoefjeTask(boefje={"id": boefje_id}, input_ooi=ooi, organization=organisation) for ooi in oois]
        now_ms = self.now_ms()
        last_runs = [self.queue.records.last_run_ms(task.hash) for task in tasks]
        return self.queue.push_many(
            (task, self.ranker.rank(RankingContext(now_ms=now_ms, last_run_ms=last_run)))
            for task, last_run in zip(tasks, last_runs, strict=True)
        )
# --- end example: scheduler ---


@pytest.fixture(scope="module", autouse=True)
def unregister_afterwards() -> Iterator[None]:
    """The examples register at import, as a real module would; the other tests' registries stay as they were."""
    yield
    RANKERS.pop("stale-first", None)
    SCHEDULERS.pop("watchlist", None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def context(fake_redis: fakeredis.FakeRedis, key_prefix: str, clock: FakeClock) -> Iterator[AppContext]:
    built = AppContext.create(load_settings(key_prefix=key_prefix), redis_client=fake_redis, clock_ms=clock)
    yield built
    built.close()


def test_the_ranker_is_registered_by_its_name_and_ranks_stale_work_first() -> None:
    assert RANKERS["stale-first"] is StaleFirstRanker
    ranker = RANKERS["stale-first"]()
    now = 1_800_000_000_000
    never = ranker.rank(RankingContext(now_ms=now))
    stale = ranker.rank(RankingContext(now_ms=now, last_run_ms=now - 2 * 86_400_000))
    fresh = ranker.rank(RankingContext(now_ms=now, last_run_ms=now - 60_000))
    just_now = ranker.rank(RankingContext(now_ms=now, last_run_ms=now))
    assert never == stale == now < fresh < just_now == now + STALE_MAX_DELAY_MS
    assert ranker.rank(RankingContext(now_ms=now, manual=True)) == now - MANUAL_LEAD_MS


def test_the_scheduler_is_registered_and_queues_its_watch_list_stalest_first(
    context: AppContext, clock: FakeClock
) -> None:
    assert SCHEDULERS["watchlist"] is WatchlistScheduler
    scheduler = SCHEDULERS["watchlist"](context)
    assert isinstance(scheduler, WatchlistScheduler)
    stale, fresh, new = (f"Hostname|internet|{name}.example" for name in ("stale", "fresh", "new"))

    first = scheduler.run("org1", "dns-records", [stale, fresh])
    assert [result.outcome for result in first] == [PushOutcome.QUEUED] * 2
    ran = {record.ooi: record for record in context.boefjes.claim(2)}
    assert context.boefjes.ack(ran[stale].id) == "ok"
    clock.advance(20 * 60)
    assert context.boefjes.ack(ran[fresh].id) == "ok"
    clock.advance(1)

    again = scheduler.run("org1", "dns-records", [fresh, stale, new])
    assert [result.outcome for result in again] == [PushOutcome.QUEUED] * 3
    now = clock()
    scores = {record.ooi: record.score for record in context.boefjes.list_queued("org1")}
    assert scores == {new: now,  # never ran: no delay
                      stale: now + STALE_MAX_DELAY_MS - (20 * 60 + 1) * 1000,  # its result is 20 min old
                      fresh: now + STALE_MAX_DELAY_MS - 1000}  # its result is a second old
    assert [record.ooi for record in context.boefjes.claim(3)] == [new, stale, fresh]


def test_a_second_run_of_queued_work_is_refused_as_a_duplicate(context: AppContext) -> None:
    scheduler = WatchlistScheduler(context)
    [queued] = scheduler.run("org1", "dns-records", ["Hostname|internet|a.example"])
    [again] = scheduler.run("org1", "dns-records", ["Hostname|internet|a.example"])
    assert again.outcome is PushOutcome.DUPLICATE and again.task_id == queued.task_id


def examples() -> dict[str, str]:
    source = Path(__file__).read_text()
    return dict(re.findall(r"# --- example: (\w+) ---\n(.*?)# --- end example: \1 ---", source, re.S))


def test_docs_extending_md_shows_the_examples_verbatim() -> None:
    found = examples()
    assert set(found) == {"ranker", "scheduler"}
    document = EXTENDING_MD.read_text()
    for name, code in found.items():
        assert code.strip() in document, f"docs/extending.md no longer shows the {name} example of this file"
