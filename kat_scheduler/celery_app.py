"""The Celery app of the scheduler processes (beat and the scheduler worker)."""

import importlib

from celery import Celery

import kat_scheduler.logging_setup  # noqa: F401  (our log format in beat and worker, via Celery's signals)
from kat_scheduler.config import load_settings
from kat_scheduler.config.celery_overrides import operator_overrides


def create_app() -> Celery:
    settings = load_settings()
    celery_app = Celery("kat_scheduler")
    celery_app.config_from_object("kat_scheduler.celery_defaults")
    celery_app.conf.broker_url = settings.celery_broker_url
    celery_app.conf.beat_scheduler = "kat_scheduler.beat:KatScheduler"
    # An operator's celeryconfig module (CELERY_CONFIG_MODULE, default "celeryconfig") has the last word.
    celery_app.conf.update(operator_overrides())
    return celery_app


# Worker bootsteps of `celery -A kat_scheduler worker`: import path, one per line.
WORKER_STEPS: list[str] = [
    "kat_scheduler.listening:ListenersStep",
    "kat_scheduler.dispatcher:DispatchStep",
]


def install_worker_steps(celery_app: Celery) -> None:
    for path in WORKER_STEPS:
        module_name, _, name = path.partition(":")
        step = getattr(importlib.import_module(module_name), name)
        celery_app.steps["worker"].add(step)


app = create_app()
install_worker_steps(app)
