"""The reference runner: a Celery app with OpenKAT's runner tasks (one per kind of work), doing what a
handler says.

    celery -A kat_scheduler.runner worker -Q boefjes,normalizers,reports -E

Its defaults keep the dispatcher's priority honest: a worker takes one message per free process
(prefetch multiplier 1) and acknowledges it only when done (acks late), so a message is never held
behind work the runner has not started, and a runner that dies hands its messages back to the
broker (reject on worker lost).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from kat_scheduler.broker_reconnect import WORKER_CONSUMER
from kat_scheduler.config import Settings, load_settings
from kat_scheduler.config.celery_overrides import operator_overrides
from kat_scheduler.kinds import KINDS
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.runner.once import AlreadyRan, RunOnce

logger = logging.getLogger(__name__)

# A handler runs one task: (kind, payload) -> None. Raising fails the task.
Handler = Callable[[str, dict[str, Any]], None]

RUNNER_DEFAULTS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "task_ignore_result": True,
    "worker_prefetch_multiplier": 1,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "broker_connection_retry_on_startup": True,
    # After a lost broker connection Celery throttles the new connection's prefetch until the tasks of the
    # old one are acknowledged, which they never can be: the runner sat idle for minutes after a RabbitMQ
    # restart (python -m chaos; celery/celery#7515, #9512). Prefetch stays at one per free thread anyway.
    "worker_enable_prefetch_count_reduction": False,
    "worker_consumer": WORKER_CONSUMER,  # back within seconds of the broker (broker_reconnect.py)
    "timezone": "UTC",
    "enable_utc": True,
}


def load_handler(path: str) -> Handler:
    """"package.module:name" -> the handler it names."""
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise ValueError(f"SCHEDULER_RUNNER_HANDLER must look like 'package.module:name', not {path!r}")
    handler: Handler = getattr(importlib.import_module(module_name), name)
    return handler


def register_runner_tasks(app: Celery, settings: Settings, handler: Handler | None = None) -> None:
    """Add a task per kind of work under its hand-off's name; without `handler`, SCHEDULER_RUNNER_HANDLER's is
    loaded at the first task, in the worker."""
    chosen: list[Handler] = [handler] if handler is not None else []
    once = RunOnce(settings)

    def run(kind: str, payload: dict[str, Any], task: Task) -> None:
        if not chosen:
            chosen.append(load_handler(settings.runner_handler))
        organisation = _organisation(kind, payload)
        try:
            with once.run(task.request.id):
                logger.info("task %s (%s, organisation %s) starting on %s", task.request.id, kind, organisation,
                            task.request.hostname, extra=task_fields(task.request.id, kind, organisation))
                chosen[0](kind, payload)
        except AlreadyRan:
            logger.warning("task %s (%s, organisation %s) was delivered again after it ran; skipped",
                           task.request.id, kind, organisation, extra=task_fields(task.request.id, kind, organisation))

    def task_for(kind: str) -> Callable[..., None]:
        def handle(self: Task, payload: dict[str, Any]) -> None:
            run(kind, payload, self)
        handle.__name__ = f"handle_{kind}"
        return handle

    routes = {}
    for kind in KINDS:  # one task per registered kind of work, under the name its hand-off gives
        hand_off = settings.hand_off(kind)
        app.task(name=hand_off.task_name, bind=True, shared=False)(task_for(kind))
        routes[hand_off.task_name] = {"queue": hand_off.celery_queue}
    app.conf.task_routes = routes


def create_runner_app(settings: Settings | None = None, handler: Handler | None = None,
                      broker_url: str | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("kat_runner")
    app.conf.update(RUNNER_DEFAULTS)
    app.conf.broker_url = settings.celery_broker_url
    app.conf.update(operator_overrides())  # the operator's celeryconfig.py has the last word
    if broker_url:
        app.conf.broker_url = broker_url
    register_runner_tasks(app, settings, handler)
    return app


def _organisation(kind: str, payload: dict[str, Any]) -> str:
    try:
        return KINDS[kind].payload.model_validate(payload).organization
    except ValueError:  # the handler reports what is wrong with it
        return "?"
