"""What a kind of work is, and the registry every part of kat_scheduler reads the kinds from.

A kind is one declaration: its name (the queue, the scheduler id and the task type in the API), the
payload model a runner receives (which also says the work identity), the name of the ranker that
scores its tasks (looked up in the rankers' registry, so a ranker registered under that name replaces
it everywhere), where its plugin id sits in the payload (for the pop's filters) and its Celery hand-off. The
context builds a queue and a schedule store per registered kind, the dispatcher a route, the runner a
task, the API a scheduler, the CLI and the metrics a row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kat_scheduler.models.tasks import TaskPayload
from kat_scheduler.rankers.base import RANKERS, Ranker


class HandOff(BaseModel):
    """Where a kind's tasks go to the Celery runners (kat-contracts.md §6): the task name, the queue,
    and how many may be in flight at once (0: the runners' pool sizes, discovered from Celery).
    Read from SCHEDULER_<KIND>_TASK_NAME, SCHEDULER_<KIND>_CELERY_QUEUE and SCHEDULER_<KIND>_SLOTS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_name: str = Field(min_length=1)
    celery_queue: str = Field(min_length=1)
    slots: int = Field(0, ge=0)


HAND_OFF_FIELDS = {"task_name": "Celery task name a {kind} task is sent as",
                   "celery_queue": "Celery queue the {kind} runners consume",
                   "slots": "{Kind} tasks in flight at once (0: the runners' pool sizes)"}


@dataclass(frozen=True)
class Kind:
    name: str
    payload: type[TaskPayload]
    ranker: str  # a name in kat_scheduler.rankers.RANKERS
    task_name: str  # the default hand-off
    celery_queue: str
    plugin_path: tuple[str, ...]  # where the payload names its plugin: a pop's data.<path> filter

    def ranking(self) -> Ranker:
        """A ranker for this kind's tasks."""
        return RANKERS[self.ranker]()

    def env_name(self, field: str) -> str:
        return f"SCHEDULER_{self.name.upper()}_{field.upper()}"

    def hand_off(self, overrides: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] = os.environ) -> HandOff:
        """The defaults, then the environment, then `overrides`; ValueError names a bad variable."""
        values: dict[str, Any] = {"task_name": self.task_name, "celery_queue": self.celery_queue}
        values |= {field: environ[self.env_name(field)] for field in HandOff.model_fields
                   if self.env_name(field) in environ}
        values |= dict(overrides or {})
        try:
            return HandOff.model_validate(values)
        except ValidationError as error:
            problem = error.errors()[0]
            field = str(problem["loc"][0]) if problem["loc"] else "?"
            raise ValueError(f"{self.env_name(field)}: {problem['msg']} (got {problem.get('input')!r})") from None


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Make a kind of work known to every part of kat_scheduler (see docs/extending.md)."""
    if not kind.name.isidentifier() or kind.name != kind.name.lower():
        raise ValueError(f"a kind's name is a lower-case identifier, not {kind.name!r}")
    KINDS[kind.name] = kind
    return kind
