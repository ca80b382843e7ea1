"""Request and response bodies of the API (kat-contracts.md §7). Tasks and schedules are answered with
the project's own models (kat_scheduler.models.Task, Schedule)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from kat_scheduler.models import Schedule, Task, TaskStatus
from kat_scheduler.models.inputs import Document, OrganisationId

NAME_LENGTH = 200  # organisation and scheduler ids
CRON_LENGTH = 200


def _as_utc(moment: datetime) -> datetime:
    """Naive times are UTC; aware ones are converted, refusing those that leave datetime's range."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range in UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date_means_its_end(value: Any) -> Any:
    """A date alone, as OpenKAT's web UI sends the end of a period, means the last moment of that day."""
    if isinstance(value, str) and _DATE_ONLY.fullmatch(value):
        return value + "T23:59:59.999999"
    return value


UtcDatetimeUntil = Annotated[datetime, BeforeValidator(_date_means_its_end), AfterValidator(_as_utc)]


class PushRequest(BaseModel):
    """A task to queue: `data` is the payload (BoefjeTask or NormalizerTask of contracts §5). Other fields
    of a Task (status, hash, times), as a runner sends when it gives a task back, are ignored."""

    model_config = ConfigDict(extra="ignore")

    organisation: OrganisationId
    priority: int | None = Field(None, description="lower first; 1 (or less) is a manual run, see docs/api.md")
    data: Document
    id: UUID | None = Field(None, description="the task id; must equal data.id when both are given")
    scheduler_id: str | None = Field(None, max_length=NAME_LENGTH, description="when given, the scheduler pushed to")


class TaskPatch(BaseModel):
    """A status change: running, completed, failed (a runner's progress), cancelled, or queued (give it back)."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus


class PopResponse(BaseModel):
    results: list[Task]


class TaskPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[Task]


class SchedulerOut(BaseModel):
    id: str
    type: str
    item_type: str
    qsize: int
    last_activity: datetime | None = Field(None, description="when the newest task of this scheduler was created")


class QueueOut(BaseModel):
    id: str
    size: int


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    scheduler_id: str = Field(max_length=NAME_LENGTH)
    organisation: OrganisationId
    data: Document
    schedule: str | None = Field(None, max_length=CRON_LENGTH, description="a cron expression")
    deadline_at: UtcDatetime | None = None
    enabled: bool = True


class SchedulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    schedule: str | None = Field(None, max_length=CRON_LENGTH)
    deadline_at: UtcDatetime | None = None
    data: Document | None = None


class SchedulePage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[Schedule]


class Health(BaseModel):
    service: str
    healthy: bool
    version: str
    externals: dict[str, bool]
    externals_age_seconds: float | None = Field(
        None, description="how old the answer in externals is; null when no probe has finished yet")


HourStats = dict[str, int]


class PluginLimitIn(BaseModel):
    """A plugin's limit: at most `concurrency` tasks in flight, at most `rate` claims ("N/s", "N/m", "N/h",
    "N/d"); one of them or both."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1)
    rate: str | None = Field(None, max_length=32, examples=["1/s"])


class PluginLimitOut(BaseModel):
    plugin_id: str
    concurrency: int | None
    rate: str | None
    in_flight: int = Field(description="its tasks claimed and not ended, over every queue")
    queued: int
    held: int = Field(description="queued tasks the limit holds back now (all of them while it has no room)")
