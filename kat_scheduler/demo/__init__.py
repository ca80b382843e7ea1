"""`make demo`: the whole scheduler against a simulated KAT world, in one process.

Everything a deployment runs is here, each on threads of its own: the simulated Katalogus, Octopoes
and Bytes; the beat's scheduling (leader lease included); the scheduler worker's event listeners and
dispatcher; and reference runners (Celery, eight threads) whose boefjes save raw files to Bytes and
whose normalizers add objects to Octopoes, which publishes the mutations that queue new boefje tasks.
Redis and RabbitMQ are the real ones when they answer, else embedded stand-ins (services.py).
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
from kat_scheduler.demo.services import DemoServices, delete_rabbitmq_queues, demo_services
from kat_scheduler.demo.view import Rate, live_view, summary
from kat_scheduler.dispatcher import Dispatcher
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


def demo_settings(base: Settings, kat: SimulatedKAT, services: DemoServices, prefix: str) -> Settings:
    return load_settings(**{
        **base.model_dump(), "katalogus_api": kat.katalogus_url, "octopoes_api": kat.octopoes_url,
        "bytes_api": kat.bytes_url, "redis_url": services.redis_url, "broker_url": services.redis_url,
        "key_prefix": prefix,
        "hand_offs": {kind: {"celery_queue": f"{prefix}-{kind}s", "slots": 4} for kind in KINDS},
        "lease_seconds": 60, "beat_tick_seconds": 0.5, "organisation_refresh_seconds": 5,
        "katalogus_cache_ttl": 2, "schedule_batch_size": 200,
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


def run_demo(options: DemoOptions, out: Any = None) -> dict[str, int]:
    """Run the demo, print what happens, and return the summary's figures."""
    out = out or sys.stdout
    base = load_settings()
    prefix = f"kat-demo-{uuid.uuid4().hex[:6]}"
    log_file = Path(tempfile.gettempdir()) / f"{prefix}.log"
    with logging_to(log_file), demo_services(base, options.embedded) as services, ExitStack() as stack:
        print(f"kat_scheduler demo: queues and Celery messages on {services.redis_label};", file=out)
        print(f"  OpenKAT's events through {services.events_label}.", file=out)
        print(f"  every log line (pika, kombu, Celery, kat_scheduler) goes to {log_file}", file=out)
        mutations, raw_files = f"{prefix}.scan_profile_mutations", f"{prefix}.raw_file_received"
        world = World.generate(seed=options.seed, organisations=options.organisations,
                               oois_per_organisation=options.objects)
        initial_objects = {(org, pk) for org, oois in world.oois.items() for pk in oois}
        kat = SimulatedKAT.start(world, services.publisher, mutation_queue=mutations, raw_file_queue=raw_files)
        names = {SCAN_PROFILE_MUTATIONS: mutations, RAW_FILE_RECEIVED: raw_files}
        stack.callback(kat.stop)
        settings = demo_settings(base, kat, services, prefix)
        context = AppContext.create(settings)
        stack.callback(lambda: _forget(context, prefix))
        _schedule_reports(context, sorted(world.organisations))

        events = EventCount()
        if services.bus is not None:
            for subscription in subscriptions(context):
                services.bus.subscribe(names[subscription.queue], subscription.listener.message_model,
                                       events.counting(subscription.handle))
        else:
            stack.callback(delete_rabbitmq_queues, base.queue_uri, [mutations, raw_files])
            events.listeners = start_listeners(context, names)
            stack.callback(lambda: _stop_listeners(events.listeners))

        app = Celery(prefix, broker=services.redis_url, set_as_current=False)
        app.config_from_object(celery_defaults)
        runner = create_runner_app(settings, handler=use_simulation(kat), broker_url=services.redis_url)
        stack.enter_context(start_worker(runner, pool="threads", concurrency=options.runner_threads,
                                         perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30,
                                         queues=[settings.hand_off(kind).celery_queue for kind in KINDS]))
        dispatcher = Dispatcher.from_context(app, context)
        dispatcher.start()
        stack.callback(dispatcher.stop)
        beat = KatScheduler(app, context=context)
        stop = threading.Event()
        beat_thread = threading.Thread(target=_tick, args=(beat, stop), name="demo-beat", daemon=True)
        beat_thread.start()
        stack.callback(_stop_beat, beat, beat_thread, stop)

        _flower_hint(services, out)
        _watch(context, events, options, out)
        added = {(org, pk) for org, oois in world.oois.items() for pk in oois} - initial_objects
        text, figures = summary(context, added)
        print(text, file=out)
        return figures


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


def _schedule_reports(context: AppContext, organisations: list[str]) -> None:
    """A report recipe per organisation, every minute from now, as Rocky schedules one."""
    now = datetime.fromtimestamp(context.clock_ms() / 1000, tz=UTC)
    for organisation in organisations:
        task = ReportTask(organisation_id=organisation, report_recipe_id=f"demo-recipe-{organisation}")
        context.schedules["report"].new(organisation, task.model_dump(mode="json", exclude={"id"}), task.hash,
                                        cron="* * * * *", deadline_at=now, now=now)


def _tick(beat: KatScheduler, stop: threading.Event) -> None:
    while not stop.is_set():
        stop.wait(beat.tick() or 0.05)


def _stop_beat(beat: KatScheduler, thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    thread.join(10)
    beat.close()


def _watch(context: AppContext, events: EventCount, options: DemoOptions, out: Any) -> None:
    start = time.monotonic()
    rate = Rate()
    redraw = out.isatty()
    every = 1.0 if redraw else 5.0
    while options.forever or time.monotonic() - start < options.seconds:
        time.sleep(min(every, max(0.1, options.seconds - (time.monotonic() - start))) if not options.forever
                   else every)
        handled = events.handled
        view = live_view(context, handled, rate.update(handled), time.monotonic() - start)
        print(("\033[H\033[J" if redraw else "") + view, file=out, flush=True)


def _flower_hint(services: DemoServices, out: Any) -> None:
    print(f"  watch it in Flower: celery -A kat_scheduler flower --broker={services.redis_url} "
          "(run the demo with --forever to keep it up)", file=out)


def _stop_listeners(listeners: list[Any]) -> None:
    for listener, _ in listeners:
        listener.stop()
    for listener, thread in listeners:
        thread.join(listener.stop_timeout)


def _forget(context: AppContext, prefix: str) -> None:
    """The demo leaves nothing behind in a real Redis."""
    for pattern in ("{" + prefix + ":*", f"{prefix}*"):
        keys = list(context.redis.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            context.redis.delete(*keys[start:start + 1000])
    context.close()
