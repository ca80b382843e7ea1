from kat_scheduler.models.events import RawFileReceived, ScanProfileMutation
from kat_scheduler.models.ooi import OOI, ScanProfile
from kat_scheduler.models.organisation import Organisation
from kat_scheduler.models.plugin import Plugin
from kat_scheduler.models.raw_data import BoefjeMeta, BoefjeRef, MimeType, RawData
from kat_scheduler.models.schedule import Schedule
from kat_scheduler.models.tasks import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    BoefjeTask,
    NormalizerRef,
    NormalizerTask,
    Task,
    TaskPayload,
    TaskStatus,
    identity_hash,
    new_task_id,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "OOI",
    "BoefjeMeta",
    "BoefjeRef",
    "BoefjeTask",
    "MimeType",
    "NormalizerRef",
    "NormalizerTask",
    "Organisation",
    "Plugin",
    "RawData",
    "RawFileReceived",
    "ScanProfile",
    "ScanProfileMutation",
    "Schedule",
    "Task",
    "TaskPayload",
    "TaskStatus",
    "identity_hash",
    "new_task_id",
]
