"""Where each kind of task goes: its Celery task name and queue, and how many runner slots it may use.

The names and queues are OpenKAT's contract with its runners (kat-contracts.md §6); each kind declares
its own (kinds/) and the settings can rename them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kat_scheduler.config import Settings
from kat_scheduler.kinds import KINDS


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # the kind of work (kinds/): the priority queue the tasks come from
    task_name: str
    celery_queue: str
    slots: int  # at most this many in flight; 0 = the runners' pool size, discovered from Celery


def routes_from(settings: Settings) -> list[Route]:
    """One route per registered kind of work."""
    routes = []
    for kind in KINDS:
        hand_off = settings.hand_off(kind)
        routes.append(Route(kind, hand_off.task_name, hand_off.celery_queue, hand_off.slots))
    return routes
