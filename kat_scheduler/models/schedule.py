from datetime import datetime
from typing import Any

from pydantic import BaseModel


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
