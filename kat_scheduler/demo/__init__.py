"""`make demo`: the whole scheduler against a simulated KAT world, in one process.

Everything a deployment runs is here, each on threads of its own: the simulated Katalogus, Octopoes
and Bytes; the beat's scheduling (leader lease included); the scheduler worker's event listeners and
dispatcher; and reference runners (Celery, eight threads) whose boefjes save raw files to Bytes and
whose normalizers add objects to Octopoes, which publishes the mutations that queue new boefje tasks.
Redis and RabbitMQ are the real ones when they answer, else embedded stand-ins (services.py).

On top of that runs the show (show.py): the world keeps changing, one organisation floods while another
trickles, a person asks for a manual run, and a pull runner pops a task over the API (api.py; its
dashboard too) and is killed. The screen says what the scheduler made of it, read from Redis.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery
from celery.contrib.testing.worker import start_worker

from kat_scheduler import celery_defaults
from kat_scheduler.beat import KatScheduler
from kat_scheduler.config import Settings, load_settings
from kat_scheduler.connectors.listeners.openkat import RAW_FILE_RECEIVED, SCAN_PROFILE_MUTATIONS
from kat_scheduler.context import AppContext
from kat_scheduler.demo.api import serving_api
from kat_scheduler.demo.runners import PacedHandler, ServingLog
from kat_scheduler.demo.script import Timeline, grace_period_for
from kat_scheduler.demo.services import DemoServices, delete_rabbitmq_queues, demo_services
from kat_scheduler.demo.show import Show
from kat_scheduler.demo.view import Screen, summary
from kat_scheduler.dispatcher import Dispatcher, DispatchOptions
from kat_scheduler.kinds import KINDS
from kat_scheduler.kinds.report import ReportTask
from kat_scheduler.listening import start_listeners, subscriptions
from kat_scheduler.logging_setup import TextFormatter, redirect_to
from kat_scheduler.runner.handlers import use_simulation
from kat_scheduler.runner.worker import create_runner_app
from kat_scheduler.simulation import SimulatedKAT, World


@dataclass
class DemoOptions:
    seconds: float = 30.0
    forever: bool = False
    embedded: bool = False  # use the stand-ins even when Redis and RabbitMQ answer
    organisations: int = 3
    objects: int = 25  # per organisation
    seed: int = 1
    runner_threads: int = 8
    port: int = 8004  # the API and its dashboard; a free port when this one is taken


# How long each kind's simulated work takes (seconds): long enough that queues build up and the ranking
# and the organisations' turns show, short enough that a 30 s run serves a few hundred tasks.
WORK_SECONDS = {"boefje": 0.4, "normalizer": 0.1, "report": 0.2}
SLOTS = 4  # tasks of each kind the dispatcher keeps at the Celery runner at once
# A popped task's lease: short, so that the killed pull runner's task comes back within the run.
PULL_LEASE_SECONDS = 3.0
BEAT_TICK_SECONDS = 0.5  # the beat reaps expired leases every tick
POLL_SECONDS = 0.5  # the narrator reads Redis this often, and the screen shows what it wrote
SETTLE_SECONDS = 4.0  # the most the demo waits after its time for a scene's outcome (see _settle)
CELERY_RUNNER = "celery-runner"
LAST_TASKS_SECONDS = 5.0  # the most the demo waits on its way out for the runner's last tasks to end


def demo_settings(base: Settings, kat: SimulatedKAT, services: DemoServices, prefix: str,
                  seconds: float) -> Settings:
    """Settings for a short show: work comes round again within the run (the grace period, no jitter),
    and a lost pull runner's task comes back within seconds."""
    return load_settings(**{
        **base.model_dump(), "katalogus_api": kat.katalogus_url, "octopoes_api": kat.octopoes_url,
        "bytes_api": kat.bytes_url, "redis_url": services.redis_url, "broker_url": services.redis_url,
        "key_prefix": prefix,
        "hand_offs": {kind: {"celery_queue": f"{prefix}-{kind}s", "slots": SLOTS} for kind in KINDS},
        "lease_seconds": 60, "pull_lease_seconds": PULL_LEASE_SECONDS, "beat_tick_seconds": BEAT_TICK_SECONDS,
        "organisation_refresh_seconds": 5, "katalogus_cache_ttl": 2, "schedule_batch_size": 200,
        "grace_period": grace_period_for(seconds), "schedule_jitter_seconds": 0,
    })


class EventCount:
    """Events handled: counted here for the in-process bus, by the listeners for RabbitMQ."""

    def __init__(self) -> None:
        self.counted = 0
        self.listeners: list[Any] = []
        self._lock = threading.Lock()

    def counting(self, handler: Callable[[Any], object]) -> Callable[[Any], None]:
        def counted(message: Any) -> None:
            handler(message)
            with self._lock:
                self.counted += 1
        return counted

    @property
    def handled(self) -> int:
        return self.counted + sum(listener.handled for listener, _ in self.listeners)


@dataclass(frozen=True)
class Stage:
    """What the show plays on, all running: the simulated KAT, the scheduler and its API."""

    kat: SimulatedKAT
    context: AppContext
    events: EventCount
    serving: ServingLog
    api_url: str
    celery_runner: str
    initial_objects: frozenset[tuple[str, str]]


def run_demo(options: DemoOptions, out: Any = None) -> dict[str, int]:
    """Run the demo, print what happens, and return the summary's figures."""
    out = out or sys.stdout
    base = load_settings()
    prefix = f"kat-demo-{uuid.uuid4().hex[:6]}"
    log_file = Path(tempfile.gettempdir()) / f"{prefix}.log"
    with logging_to(log_file), demo_services(base, options.embedded) as services, ExitStack() as stack:
        _introduce(services, log_file, out)
        stage = _set_up(base, services, options, prefix, stack)
        _flower_hint(services, out)
        print(f"  the scheduler's dashboard: {stage.api_url}/dashboard (its API: {stage.api_url}/docs)", file=out)
        return _perform(stage, options, out, stack)


def _set_up(base: Settings, services: DemoServices, options: DemoOptions, prefix: str, stack: ExitStack) -> Stage:
    """Start the simulated KAT, the scheduler, a Celery runner and the API, each stopped by `stack`."""
    mutations, raw_files = f"{prefix}.scan_profile_mutations", f"{prefix}.raw_file_received"
    world = World.generate(seed=options.seed, organisations=options.organisations,
                           oois_per_organisation=options.objects)
    kat = SimulatedKAT.start(world, services.publisher, mutation_queue=mutations, raw_file_queue=raw_files)
    stack.callback(kat.stop)
    settings = demo_settings(base, kat, services, prefix, options.seconds)
    context = AppContext.create(settings)
    stack.callback(lambda: _forget(context, prefix))
    events = _listen(context, services, base, {SCAN_PROFILE_MUTATIONS: mutations, RAW_FILE_RECEIVED: raw_files},
                     stack)
    serving = ServingLog(context.redis, prefix)
    stack.enter_context(serving.hearing_forwards({settings.hand_off(kind).celery_queue: kind for kind in KINDS}))
    celery_runner = f"{CELERY_RUNNER}@{prefix}"
    _run_scheduler(context, kat, services, options, celery_runner, stack)
    api_url = stack.enter_context(serving_api(context, options.port))
    return Stage(kat, context, events, serving, api_url, celery_runner, frozenset(_objects(kat)))


def _perform(stage: Stage, options: DemoOptions, out: Any, stack: ExitStack) -> dict[str, int]:
    """Play the show, watch it, and print the summary; returns its figures."""
    context = stage.context
    _schedule_reports(context, sorted(stage.kat.world.organisations), options.seconds)
    show = Show.stage(context, stage.kat, stage.serving, stage.api_url, options.seconds, stage.celery_runner,
                      options.seed)
    stack.callback(show.stop)  # the scenes stop before the services they use
    screen = Screen(context, show.journal, f"{stage.api_url}/dashboard", out, lambda: stage.events.handled)
    show.start()
    started = _watch(options, show, screen)
    show.stop()
    _settle(show, screen, started)
    findings = show.findings()
    screen.close()
    added = _objects(stage.kat) - stage.initial_objects - show.changes.created()  # what the normalizers found
    text, figures = summary(context, added)
    print(text, *findings.lines(), sep="\n", file=out)
    return figures | findings.figures()


def _introduce(services: DemoServices, log_file: Path, out: Any) -> None:
    print(f"kat_scheduler demo: queues and Celery messages on {services.redis_label};", file=out)
    print(f"  OpenKAT's events through {services.events_label}.", file=out)
    print(f"  every log line (pika, kombu, Celery, kat_scheduler) goes to {log_file}", file=out)


def _objects(kat: SimulatedKAT) -> set[tuple[str, str]]:
    """Every (organisation, object) in Octopoes now; the runners may be adding more meanwhile."""
    return {(org, ooi["primary_key"]) for org in kat.world.organisations for ooi in kat.octopoes.objects_of(org)}


def _listen(context: AppContext, services: DemoServices, base: Settings, names: dict[str, str],
            stack: ExitStack) -> EventCount:
    """The scheduler's event listeners: on the in-process bus, or on RabbitMQ's queues `names`."""
    events = EventCount()
    if services.bus is not None:
        for subscription in subscriptions(context):
            services.bus.subscribe(names[subscription.queue], subscription.listener.message_model,
                                   events.counting(subscription.handle))
    else:
        stack.callback(delete_rabbitmq_queues, base.queue_uri, list(names.values()))
        events.listeners = start_listeners(context, names)
        stack.callback(lambda: _stop_listeners(events.listeners))
    return events


def _run_scheduler(context: AppContext, kat: SimulatedKAT, services: DemoServices, options: DemoOptions,
                   celery_runner: str, stack: ExitStack) -> None:
    """The Celery runner (its work paced), the dispatcher and the beat, each stopped by `stack`."""
    settings = context.settings
    app = Celery(context.settings.key_prefix, broker=services.redis_url, set_as_current=False)
    app.config_from_object(celery_defaults)
    handler = PacedHandler(use_simulation(kat), WORK_SECONDS)
    stack.callback(handler.wait_idle, LAST_TASKS_SECONDS)  # after the worker stops, before Redis goes
    runner = create_runner_app(settings, handler=handler, broker_url=services.redis_url)
    stack.enter_context(start_worker(runner, pool="threads", concurrency=options.runner_threads,
                                     perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30,
                                     hostname=celery_runner,
                                     queues=[settings.hand_off(kind).celery_queue for kind in KINDS]))
    # The beat reaps expired leases every tick; the dispatcher as often, so a lost task never waits long.
    dispatcher = Dispatcher.from_context(app, context, DispatchOptions(reap_seconds=BEAT_TICK_SECONDS))
    dispatcher.start()
    stack.callback(dispatcher.stop)
    beat = KatScheduler(app, context=context)
    stop = threading.Event()
    beat_thread = threading.Thread(target=_tick, args=(beat, stop), name="demo-beat", daemon=True)
    beat_thread.start()
    stack.callback(_stop_beat, beat, beat_thread, stop)


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """Every log line of the run goes to `path` instead of the screen, which is the live view's."""
    handler = logging.FileHandler(path)
    handler.setFormatter(TextFormatter())
    try:
        with redirect_to(handler):
            yield
    finally:
        handler.close()


def _schedule_reports(context: AppContext, organisations: list[str], seconds: float) -> None:
    """A report recipe per organisation, every minute, first due a fifth into the run, as Rocky schedules
    one."""
    due = datetime.fromtimestamp(context.clock_ms() / 1000 + Timeline.scaled(seconds).reports_due, tz=UTC)
    for organisation in organisations:
        task = ReportTask(organisation_id=organisation, report_recipe_id=f"demo-recipe-{organisation}")
        context.schedules["report"].new(organisation, task.model_dump(mode="json", exclude={"id"}), task.hash,
                                        cron="* * * * *", deadline_at=due, now=due)


def _tick(beat: KatScheduler, stop: threading.Event) -> None:
    while not stop.is_set():
        stop.wait(beat.tick() or 0.05)


def _stop_beat(beat: KatScheduler, thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    thread.join(10)
    beat.close()


def _watch(options: DemoOptions, show: Show, screen: Screen) -> float:
    """Until the time is up (or Ctrl-C), the narrator looks at Redis and the screen shows what it wrote;
    returns when the watch started (monotonic)."""
    start = time.monotonic()
    try:
        while options.forever or time.monotonic() - start < options.seconds:
            left = options.seconds - (time.monotonic() - start)
            time.sleep(POLL_SECONDS if options.forever else min(POLL_SECONDS, max(0.05, left)))
            show.narrator.poll()
            screen.update(time.monotonic() - start)
    except KeyboardInterrupt:  # the end of a --forever run: on to the summary
        pass
    return start


def _settle(show: Show, screen: Screen, start: float) -> None:
    """A busy machine may leave a scene's outcome a little late: wait for it, SETTLE_SECONDS at most, so the
    summary does not end in the middle of the story."""
    unfinished = show.narrator.unfinished()
    if not unfinished:
        return
    show.journal.add(f"the time is up, but {' and '.join(unfinished)} {'is' if len(unfinished) == 1 else 'are'} "
                     f"not done yet: the demo waits, {SETTLE_SECONDS:g} s at most")
    deadline = time.monotonic() + SETTLE_SECONDS
    while show.narrator.unfinished() and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        show.narrator.poll()
        screen.update(time.monotonic() - start)


def _flower_hint(services: DemoServices, out: Any) -> None:
    print(f"  watch it in Flower: celery -A kat_scheduler flower --broker={services.redis_url} "
          "(run the demo with --forever to keep it up)", file=out)


def _stop_listeners(listeners: list[Any]) -> None:
    for listener, _ in listeners:
        listener.stop()
    for listener, thread in listeners:
        thread.join(listener.stop_timeout)


def _forget(context: AppContext, prefix: str) -> None:
    """The demo leaves nothing behind in a real Redis: every key that names its prefix (its queues', its
    Celery queues' and kombu's bindings of them). One scan, in big steps: a shared Redis may hold millions."""
    keys = list(context.redis.scan_iter(match=f"*{prefix}*", count=10_000))
    for start in range(0, len(keys), 1000):
        context.redis.delete(*keys[start:start + 1000])
    context.close()
