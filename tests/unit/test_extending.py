"""The worked examples of docs/extending.md, run: a new ranker and a new scheduler, each one class and
one registration, and a new kind of work, which the beat schedules, the API serves and the dispatcher
hands to a Celery runner once it is registered. The code between the `example` markers appears
verbatim in docs/extending.md."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from fastapi.testclient import TestClient

from kat_scheduler.beat import KatScheduler
from kat_scheduler.config import load_settings
from kat_scheduler.context import AppContext
from kat_scheduler.dispatcher import Dispatcher, DispatchOptions, routes_from
from kat_scheduler.kinds import KINDS, Kind, register_kind
from kat_scheduler.kinds import report as report_module
from kat_scheduler.models import BoefjeTask, TaskPayload
from kat_scheduler.models.inputs import Name, OrganisationId
from kat_scheduler.queues import PushOutcome, PushResult
from kat_scheduler.rankers import MANUAL_LEAD_MS, RANKERS, Ranker, RankingContext, register
from kat_scheduler.runner.handlers import StartRecorder, read_starts
from kat_scheduler.runner.worker import RUNNER_DEFAULTS, register_runner_tasks
from kat_scheduler.schedulers import SCHEDULERS, BeatStep, Scheduler
from kat_scheduler.schedulers import register as register_scheduler
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from kat_scheduler.simulation import SimulatedKAT
from tests.factories.tasks import FakeClock
from tests.factories.waiting import wait_for

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


# --- example: kind ---
class PingTask(TaskPayload):
    """Is this host up? The payload a ping runner receives."""

    organization: OrganisationId
    host: Name
    check: Name = "icmp"

    @property
    def identity(self) -> tuple[str | None, ...]:
        """The work: this check of this host, for this organisation."""
        return (self.host, self.check, self.organization)

    @property
    def input_ooi(self) -> str | None:
        return None  # no Octopoes object: a delete in Octopoes cancels nothing

    @property
    def plugin_id(self) -> str:
        return self.check


@register
class PingRanker(Ranker):
    """First come, first served."""

    name = "ping"
    max_delay_ms = 0
    uses_last_run = False

    def delay_ms(self, context: RankingContext) -> int:
        return 0


PING = Kind(name="ping", payload=PingTask, ranker=PingRanker.name, task_name="tasks.handle_ping",
            celery_queue="pings", plugin_path=("check",))


class PingScheduler(Scheduler):
    """Each pass of the beat, a ping of every host on the watch list whose last ping is done."""

    kind = "ping"
    watch_list = {"org1": ["192.0.2.1", "192.0.2.2"]}

    def beat_steps(self) -> list[BeatStep]:
        return [("ping the watch list", lambda beat: self.ping_all())]

    def ping_all(self) -> list[PushResult]:
        score = self.ranker.rank(RankingContext(now_ms=self.now_ms()))
        return self.queue.push_many((PingTask(organization=organisation, host=host), score)
                                    for organisation, hosts in self.watch_list.items() for host in hosts)


def register_ping() -> None:
    """What the kind's own module does when it is imported: the kind, then its scheduler."""
    register_kind(PING)
    register_scheduler(PingScheduler)
# --- end example: kind ---


@pytest.fixture(scope="module", autouse=True)
def unregister_afterwards() -> Iterator[None]:
    """The examples register at import, as a real module would; the other tests' registries stay as they were."""
    yield
    RANKERS.pop("stale-first", None)
    RANKERS.pop("ping", None)
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
    assert set(found) == {"ranker", "scheduler", "kind"}
    document = EXTENDING_MD.read_text()
    for name, code in found.items():
        assert code.strip() in document, f"docs/extending.md no longer shows the {name} example of this file"
    report_kind = inspect.getsource(report_module)
    shown = report_kind[report_kind.index("class ReportTask"):].strip()
    assert shown in document, "docs/extending.md no longer shows kat_scheduler/kinds/report.py as it is"


# -- the new kind, registered: the beat, the API and the dispatcher find it -------------------------


@pytest.fixture
def ping_registered() -> Iterator[None]:
    register_ping()
    yield
    KINDS.pop("ping", None)
    SCHEDULERS.pop("ping", None)


@pytest.fixture
def ping_context(ping_registered: None, kat: SimulatedKAT, fake_redis: fakeredis.FakeRedis,
                 key_prefix: str) -> Iterator[AppContext]:
    settings = load_settings(katalogus_api=kat.katalogus_url, octopoes_api=kat.octopoes_url, bytes_api=kat.bytes_url,
                             key_prefix=key_prefix, hand_offs={"ping": {"celery_queue": f"{key_prefix}-pings"}})
    built = AppContext.create(settings, redis_client=fake_redis)
    yield built
    built.close()


def test_a_registered_kind_is_scheduled_by_the_beat_served_by_the_api_and_dispatched(
        ping_context: AppContext, key_prefix: str) -> None:
    beat = KatScheduler(Celery("ping-beat", broker="memory://", set_as_current=False), context=ping_context)
    try:
        beat.tick()
        beat._next_pass = 0.0
        beat.tick()  # a second pass: the pings are queued already
    finally:
        beat.close()
    pings = ping_context.queues["ping"]
    assert sorted(record.data["host"] for record in pings.list_queued("org1")) == ["192.0.2.1", "192.0.2.2"]

    with TestClient(create_app(ping_context, ApiSettings(api_token=None, reap_interval_seconds=0))) as api:
        assert "ping" in [scheduler["id"] for scheduler in api.get("/schedulers").json()]
        [popped] = api.post("/schedulers/ping/pop?limit=1").json()["results"]
        assert popped["type"] == "ping" and popped["data"]["check"] == "icmp"
        assert api.patch(f"/tasks/{popped['id']}", json={"status": "completed"}).status_code == 200

    app = Celery(f"ping-{key_prefix}", broker="memory://")
    app.conf.update(RUNNER_DEFAULTS)
    app.conf.broker_transport_options = {"polling_interval": 0.005}
    starts = f"{key_prefix}:ping-starts"
    register_runner_tasks(app, ping_context.settings, StartRecorder(ping_context.redis, starts))
    [left] = pings.list_queued("org1")
    dispatcher = Dispatcher(app, ping_context.redis, ping_context.queues, routes_from(ping_context.settings),
                            DispatchOptions(inspect_timeout=0.5))
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[f"{key_prefix}-pings"]):
        dispatcher.start()
        try:
            wait_for(lambda: str(getattr(pings.records.get(left.id), "status", "")) == "completed", 15,
                     "the ping to be dispatched and run")
        finally:
            dispatcher.stop()
    assert [(line["id"], line["kind"]) for line in read_starts(ping_context.redis, starts)
            if line["event"] == "start"] == [(left.id, "ping")]
