"""Where each kind of task goes: its Celery task name and queue, and how many runner slots it may use.

The names and queues are OpenKAT's contract with its runners (kat-contracts.md §6); they come from the
settings so a deployment can rename them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kat_scheduler.config import Settings


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "boefje" or "normalizer": the priority queue the tasks come from
    task_name: str
    celery_queue: str
    slots: int  # at most this many in flight; 0 = the runners' pool size, discovered from Celery


def routes_from(settings: Settings) -> list[Route]:
    return [
        Route("boefje", settings.boefje_task_name, settings.boefje_celery_queue, settings.boefje_slots),
        Route("normalizer", settings.normalizer_task_name, settings.normalizer_celery_queue,
              settings.normalizer_slots),
    ]
