from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Schedule(BaseModel):
    """A recurring task: the work in `data` runs again at `deadline_at`, then per `schedule` (cron)."""

    id: str
    scheduler_id: str
    organisation: str
    hash: str
    data: dict[str, Any]
    enabled: bool = True
    schedule: str | None = None
    deadline_at: datetime | None = None
    created_at: datetime
    modified_at: datetime
    person_set: list[str] = Field(
        default_factory=list,
        description="the fields a person set through the API (enabled, schedule, deadline_at): the scheduler "
                    "leaves them as they are when it queues the same work again")
