"""Dispatch on the fast lane: fakeredis queues, Celery's memory:// broker and an in-thread runner
(celery.contrib.testing's worker), plus the lifecycle and the slot accounting on their own."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from kat_scheduler.config import load_settings
from kat_scheduler.connectors.listeners.bus import InProcessBus
from kat_scheduler.dispatcher import Dispatcher, Lifecycle, routes_from
from kat_scheduler.runner import create_runner_app, load_handler
from kat_scheduler.runner.handlers import SimulatedRunner, StartRecorder, max_concurrency
from kat_scheduler.runner.worker import RUNNER_DEFAULTS, register_runner_tasks
from kat_scheduler.simulation import SimulatedKAT, World
from kat_scheduler.store import StoreUnavailable
from tests.factories.runners import Lane, running
from tests.factories.tasks import FakeClock, boefje_task, make_queue
from tests.factories.waiting import wait_for


@pytest.fixture
def lane(fake_redis: fakeredis.FakeRedis, key_prefix: str) -> Lane:
    return Lane(fake_redis, key_prefix)


def memory_app() -> Celery:
    app = Celery(f"kat-test-{uuid.uuid4().hex[:6]}", broker="memory://")
    app.conf.update(RUNNER_DEFAULTS)
    app.conf.broker_transport_options = {"polling_interval": 0.005}
    return app


@pytest.fixture
def runner_app(lane: Lane) -> Celery:
    return memory_app()


@pytest.fixture
def worker(lane: Lane, runner_app: Celery, request: pytest.FixtureRequest) -> Iterator[Any]:
    """An in-thread runner recording its starts; `@pytest.mark.parametrize("runner", [(pool, n, hold)])`."""
    pool, concurrency, hold = getattr(request, "param", ("solo", 1, 0.0))
    register_runner_tasks(runner_app, lane.settings, StartRecorder(lane.client, lane.starts_key, hold))
    with start_worker(runner_app, pool=pool, concurrency=concurrency, perform_ping_check=False,
                      queues=[lane.boefje_queue, lane.normalizer_queue], shutdown_timeout=30) as started:
        yield started


def push_scores(lane: Lane, scores: list[int], org: str = "org1") -> dict[str, int]:
    return {lane.boefjes.push(boefje_task(org=org), score).task_id: score for score in scores}


# -- through a runner ----------------------------------------------------------------------------


def test_a_one_slot_runner_receives_tasks_exactly_in_score_order(lane: Lane, runner_app: Celery,
                                                                 worker: Any) -> None:
    scores = list(range(12))
    random.Random(3).shuffle(scores)
    pushed = push_scores(lane, scores)
    with running(lane.dispatcher(runner_app)):
        wait_for(lambda: lane.ended() == len(scores), 15, "all tasks to run")
        # the runner's end is logged before its task event reaches the dispatcher
        wait_for(lambda: all(lane.status(task_id) == "completed" for task_id in pushed), 5, "completion")
    assert [pushed[line["id"]] for line in lane.starts()] == sorted(scores)
    assert lane.boefjes.slots_in_use() == 0


@pytest.mark.parametrize("worker", [("solo", 1, 0.005)], indirect=True)
def test_a_manual_task_is_the_next_one_a_runner_starts(lane: Lane, runner_app: Celery, worker: Any) -> None:
    lane.boefjes.push_many([(boefje_task(), 100) for _ in range(1000)])
    with running(lane.dispatcher(runner_app)):
        wait_for(lambda: len(lane.starts()) >= 3, 10, "the backlog to start moving")
        manual = lane.boefjes.push(boefje_task(), -1).task_id
        started_by_then = len(lane.starts())
        wait_for(lambda: lane.status(manual) == "completed", 10, "the manual task")
    order = [line["id"] for line in lane.starts()]
    # With one slot, at most one task was dispatched and not yet started when the manual one came;
    # the start after it is the manual task's.
    assert order.index(manual) <= started_by_then + 1


def test_organisations_take_turns_at_the_runner(lane: Lane, runner_app: Celery, worker: Any) -> None:
    push_scores(lane, [10] * 30, org="big")
    small = push_scores(lane, [50] * 3, org="small")
    with running(lane.dispatcher(runner_app)):
        wait_for(lambda: len(lane.starts()) >= 8, 10, "eight starts")
    first = [line["organisation"] for line in lane.starts()[:6]]
    assert first.count("small") == 3, first  # the small organisation's worse-scored tasks are not starved
    assert set(small) <= {line["id"] for line in lane.starts()}


@pytest.mark.parametrize("worker", [("threads", 6, 0.03)], indirect=True)
def test_three_dispatchers_never_exceed_the_slots(fake_redis: fakeredis.FakeRedis, key_prefix: str,
                                                  runner_app: Celery, worker: Any) -> None:
    lane = Lane(fake_redis, key_prefix, boefje_slots=2)
    pushed = push_scores(lane, list(range(24)))
    dispatchers = lane.dispatch_all(runner_app, 3, len(pushed), timeout=20)
    assert max_concurrency(lane.lines()) == 2
    assert sum(dispatcher.sent for dispatcher in dispatchers) == len(pushed)


def test_an_idle_dispatcher_wakes_on_a_push(lane: Lane, runner_app: Celery, worker: Any) -> None:
    with running(lane.dispatcher(runner_app, fallback_seconds=60)) as dispatcher:
        wait_for(dispatcher.wakeup.listening.is_set, 5, "the wake-up subscription")
        time.sleep(0.2)  # let the loop go idle: a wake-up must now come from the push
        pushed_at = time.monotonic()
        task_id = lane.boefjes.push(boefje_task(), 1).task_id
        wait_for(lambda: lane.status(task_id) == "completed", 5, "the task")
    assert time.monotonic() - pushed_at < 5  # the 60 s fallback did not do it


# -- the dispatcher without a runner ----------------------------------------------------------------


class StoppingApp:
    """A stand-in Celery app whose first send_task starts a warm shutdown of the dispatcher."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.dispatcher: Dispatcher | None = None

    def send_task(self, name: str, args: tuple[Any, ...], task_id: str, queue: str) -> None:
        self.sent.append(task_id)
        assert self.dispatcher is not None
        self.dispatcher._stopping.set()


def test_a_warm_shutdown_hands_back_what_was_claimed_and_not_sent(fake_redis: fakeredis.FakeRedis,
                                                                   key_prefix: str) -> None:
    lane = Lane(fake_redis, key_prefix, boefje_slots=5)
    pushed = push_scores(lane, [1, 2, 3, 4, 5])
    app = StoppingApp()
    dispatcher = Dispatcher(app, fake_redis, lane.queues, routes_from(lane.settings))  # type: ignore[arg-type]
    app.dispatcher = dispatcher
    assert dispatcher.forward_once() == 1
    assert lane.status(app.sent[0]) == "dispatched"
    assert [lane.status(task_id) for task_id in pushed if task_id not in app.sent] == ["queued"] * 4
    assert lane.boefjes.slots_in_use() == 1


# -- slots in the queue script -----------------------------------------------------------------------


def test_dispatch_takes_no_more_than_the_free_slots_and_every_end_frees_one(
        fake_redis: fakeredis.FakeRedis, key_prefix: str, clock: FakeClock) -> None:
    queue = make_queue(fake_redis, key_prefix, lease_seconds=10, max_attempts=1, clock_ms=clock)
    for score in range(6):
        queue.push(boefje_task(), score)
    first = queue.dispatch(5, 3)
    assert [record.score for record in first] == [0, 1, 2]
    assert queue.dispatch(5, 3) == []  # another dispatcher finds the slots taken
    queue.ack(first[0].id)
    queue.release(first[1].id)
    assert queue.slots_in_use() == 1
    again = queue.dispatch(5, 3)
    assert [record.score for record in again] == [1, 3]
    clock.advance(11)
    queue.reap()  # out of attempts: dead-lettered, and the slots free
    assert queue.slots_in_use() == 0
    assert queue.claim(1)[0].id not in queue.slot_holders()  # a pull-API claim takes no slot


def test_the_queue_publishes_a_wake_up_on_push_and_on_a_freed_slot(fake_redis: fakeredis.FakeRedis,
                                                                    key_prefix: str) -> None:
    queue = make_queue(fake_redis, key_prefix)
    pubsub = fake_redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(queue.wake_channel)
    pubsub.get_message(timeout=0.1)
    queue.push(boefje_task(), 1)
    assert pubsub.get_message(timeout=1)["data"] == "push"
    [record] = queue.dispatch(1, 1)
    queue.ack(record.id)
    assert pubsub.get_message(timeout=1)["data"] == "slot"
    pubsub.close()


# -- the lifecycle -------------------------------------------------------------------------------


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lifecycle_lane(fake_redis: fakeredis.FakeRedis, key_prefix: str, clock: FakeClock) -> tuple[Lifecycle, Any]:
    queue = make_queue(fake_redis, key_prefix, lease_seconds=60, max_attempts=3, clock_ms=clock)
    settings = load_settings()
    ticker = Ticker()
    freed: list[int] = []
    lifecycle = Lifecycle({"boefje": queue}, routes_from(settings)[:1], lost_runner_grace=5,
                          on_slot_freed=lambda: freed.append(1), clock=ticker)
    return lifecycle, (queue, clock, ticker, freed)


def dispatched(queue: Any) -> str:
    queue.push(boefje_task(), 1)
    return str(queue.dispatch(1, 10)[0].id)


@pytest.mark.parametrize(("events", "status"), [
    (["task-started"], "running"),
    (["task-started", "task-succeeded"], "completed"),
    (["task-started", "task-failed"], "failed"),
    (["task-revoked"], "failed"),
    (["task-rejected"], "failed"),
    (["task-started", "task-succeeded", "task-failed"], "completed"),  # the second outcome changes nothing
])
def test_task_events_move_the_record(lifecycle_lane: tuple[Lifecycle, Any], events: list[str],
                                     status: str) -> None:
    lifecycle, (queue, _, _, freed) = lifecycle_lane
    task_id = dispatched(queue)
    for event in events:
        lifecycle.on_event({"type": event, "uuid": task_id, "hostname": "runner@a"})
    assert str(queue.records.get(task_id).status) == status
    assert queue.in_slot(task_id) == (status == "running")
    assert len(freed) == (0 if status == "running" else 1)


def test_a_rejected_and_requeued_task_keeps_its_slot(lifecycle_lane: tuple[Lifecycle, Any]) -> None:
    lifecycle, (queue, _, _, _) = lifecycle_lane
    task_id = dispatched(queue)
    lifecycle.on_event({"type": "task-rejected", "uuid": task_id, "requeue": True, "hostname": "runner@a"})
    assert str(queue.records.get(task_id).status) == "dispatched"
    assert queue.in_slot(task_id)


def test_a_live_runner_keeps_its_lease_and_a_lost_one_returns_its_task(
        lifecycle_lane: tuple[Lifecycle, Any]) -> None:
    lifecycle, (queue, clock, ticker, _) = lifecycle_lane
    task_id = dispatched(queue)
    lifecycle.on_event({"type": "worker-heartbeat", "hostname": "runner@a", "freq": 2.0})
    lifecycle.on_event({"type": "task-started", "uuid": task_id, "hostname": "runner@a"})
    clock.advance(50)
    assert lifecycle.renew_live() == 1
    clock.advance(50)  # 100 s after the claim, within the renewed 60 s lease
    assert queue.reap().requeued == []
    ticker.now += 5  # no heartbeat for two intervals and more
    lifecycle.check_runners()
    clock.advance(6)  # past the 5 s grace
    assert queue.reap().requeued == [task_id]
    assert not queue.in_slot(task_id)


def test_a_worker_offline_event_frees_its_tasks_after_the_grace(lifecycle_lane: tuple[Lifecycle, Any]) -> None:
    lifecycle, (queue, clock, _, _) = lifecycle_lane
    task_id = dispatched(queue)
    lifecycle.on_event({"type": "worker-online", "hostname": "runner@a", "freq": 2.0})
    lifecycle.on_event({"type": "task-received", "uuid": task_id, "hostname": "runner@a",
                        "name": "tasks.handle_boefje"})
    lifecycle.on_event({"type": "worker-offline", "hostname": "runner@a"})
    clock.advance(6)
    assert queue.reap().requeued == [task_id]


def running_on(lifecycle: Lifecycle, task_id: str, hostname: str = "runner@a", pid: int = 100,
               processed: int = 0) -> None:
    lifecycle.on_event({"type": "worker-online", "hostname": hostname, "freq": 2.0, "pid": pid,
                        "processed": processed})
    lifecycle.on_event({"type": "task-started", "uuid": task_id, "hostname": hostname})


@pytest.mark.parametrize("new_process", [
    {"type": "worker-online", "pid": 100},  # a container restarts as pid 1 again: same pid, online again
    {"type": "worker-heartbeat", "pid": 200},  # its worker-online went unheard; the pid says it
    {"type": "worker-heartbeat", "pid": 100, "processed": 0},  # same pid, and its count started again
], ids=["online again", "another pid", "count went back"])
def test_a_runner_restarted_under_its_name_loses_the_old_process_tasks(
        lifecycle_lane: tuple[Lifecycle, Any], new_process: dict[str, Any]) -> None:
    lifecycle, (queue, clock, _, _) = lifecycle_lane
    task_id = dispatched(queue)
    running_on(lifecycle, task_id, processed=7)
    lifecycle.on_event({"hostname": "runner@a", "freq": 2.0, "processed": 7, **new_process})
    assert lifecycle.alive("runner@a")  # the new process is a live runner ...
    assert lifecycle.renew_live() == 0  # ... but holds nothing: the old one's lease is not renewed
    clock.advance(6)  # past the 5 s grace
    assert queue.reap().requeued == [task_id]


def test_heartbeats_of_the_same_process_keep_its_tasks(lifecycle_lane: tuple[Lifecycle, Any]) -> None:
    lifecycle, (queue, clock, _, _) = lifecycle_lane
    task_id = dispatched(queue)
    running_on(lifecycle, task_id, processed=3)
    lifecycle.on_event({"type": "worker-heartbeat", "hostname": "runner@a", "freq": 2.0, "pid": 100,
                        "processed": 4})
    assert lifecycle.renew_live() == 1
    clock.advance(100)  # the 60 s lease was renewed at 0 and now again
    assert lifecycle.renew_live() == 1 and queue.reap().requeued == []


def test_a_task_its_runner_twice_does_not_list_is_lost(lifecycle_lane: tuple[Lifecycle, Any]) -> None:
    lifecycle, (queue, clock, _, _) = lifecycle_lane
    kept, dropped = dispatched(queue), dispatched(queue)
    running_on(lifecycle, kept)
    lifecycle.on_event({"type": "task-started", "uuid": dropped, "hostname": "runner@a"})
    lifecycle.reconcile({kept: "runner@a"}, {"runner@a"})
    assert lifecycle.renew_live() == 2  # one miss may be a task that just ended
    lifecycle.reconcile({kept: "runner@a"}, {"runner@a"})
    assert lifecycle.renew_live() == 1
    clock.advance(6)
    assert queue.reap().requeued == [dropped]
    lifecycle.reconcile({}, set())  # nobody answered: nothing is concluded
    assert lifecycle.renew_live() == 1


def test_a_runner_that_lists_a_task_takes_it_over(lifecycle_lane: tuple[Lifecycle, Any]) -> None:
    lifecycle, (queue, _, _, _) = lifecycle_lane
    task_id = dispatched(queue)
    lifecycle.on_event({"type": "worker-heartbeat", "hostname": "runner@b", "freq": 2.0, "pid": 5})
    lifecycle.reconcile({task_id: "runner@b"}, {"runner@b"})  # a dispatcher started while it ran
    assert lifecycle.renew_live() == 1


def test_outcomes_heard_while_redis_is_away_are_written_once_it_is_back(
        lifecycle_lane: tuple[Lifecycle, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    lifecycle, (queue, _, _, freed) = lifecycle_lane
    done, broken = dispatched(queue), dispatched(queue)
    ack = queue.ack

    def away(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("queue boefje", "redis://nowhere", ConnectionError("refused"))

    monkeypatch.setattr(queue, "ack", away)
    lifecycle.on_event({"type": "task-succeeded", "uuid": done, "hostname": "runner@a"})
    lifecycle.on_event({"type": "task-failed", "uuid": broken, "hostname": "runner@a"})
    assert len(lifecycle.unapplied) == 2 and lifecycle.replay() == 0  # still away: kept, in order
    monkeypatch.setattr(queue, "ack", ack)
    assert lifecycle.replay() == 2 and not lifecycle.unapplied
    assert str(queue.records.get(done).status) == "completed"
    assert str(queue.records.get(broken).status) == "failed" and len(freed) == 2


# -- the runner ------------------------------------------------------------------------------------


def test_the_runner_keeps_priority_honest_and_names_the_contract_tasks() -> None:
    app = create_runner_app(load_settings(), broker_url="memory://")
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert {"tasks.handle_boefje", "tasks.handle_normalizer"} <= set(app.tasks)
    assert load_handler("kat_scheduler.runner.handlers:noop")("boefje", {}) is None
    with pytest.raises(ValueError, match=r"package\.module:name"):
        load_handler("kat_scheduler.runner.handlers")


def test_the_simulated_runner_closes_the_kat_loop() -> None:
    bus = InProcessBus()
    world = World.generate(seed=2, organisations=1, oois_per_organisation=10)
    hostname = next(key for key in world.oois["org1"] if key.startswith("Hostname|"))
    with SimulatedKAT.start(world, bus) as kat:
        runner = SimulatedRunner(kat.bytes_url, "bytes", "bytes", kat.octopoes)
        task = boefje_task(org="org1", ooi=hostname)
        runner("boefje", task.model_dump())
        assert world.boefje_metas[task.id]["input_ooi"] == hostname
        assert bus.published["raw_file_received"] == 1
        [raw] = world.raw_files.values()
        meta = world.boefje_metas[task.id]
        normalizer = {"id": str(uuid.uuid4()), "normalizer": {"id": "kat_dns_records_normalize"},
                      "raw_data": {"id": raw["id"], "boefje_meta": meta,
                                   "mime_types": [{"value": value} for value in raw["mime_types"]]}}
        runner("normalizer", normalizer)
    added = [key for key in world.oois["org1"] if key.startswith("IPAddressV4|internet|10.")]
    assert len(added) == 1
    assert bus.published["scan_profile_mutations"] == 1


def test_concurrency_at_the_runner_is_read_from_its_start_and_end_lines() -> None:
    lines = [{"event": "start"}, {"event": "start"}, {"event": "end"}, {"event": "start"}, {"event": "end"},
             {"event": "end"}]
    assert max_concurrency(lines) == 2
