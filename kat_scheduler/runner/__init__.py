"""The reference runner (docs/dispatch.md):
`celery -A kat_scheduler.runner worker -Q boefjes,normalizers,reports -E`."""

from celery import Celery

from kat_scheduler.runner.worker import Handler, create_runner_app, load_handler, register_runner_tasks

__all__ = ["Handler", "create_runner_app", "load_handler", "register_runner_tasks"]

_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    """`app`, which `celery -A kat_scheduler.runner` looks for, is built on first use: importing the
    handlers neither reads the settings nor builds an app."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = create_runner_app()
    return _app
