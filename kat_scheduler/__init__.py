"""kat_scheduler: OpenKAT's task scheduler as a Celery extension.

`celery -A kat_scheduler ...` finds the Celery app as `kat_scheduler.app`; it is imported on first
use so that the queue and the models can be used without loading Celery.
"""

from typing import Any

from kat_scheduler.version import __version__

__all__ = ["__version__", "app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from kat_scheduler.celery_app import app

        return app
    raise AttributeError(f"module 'kat_scheduler' has no attribute {name!r}")
