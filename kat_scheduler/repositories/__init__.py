from kat_scheduler.repositories.schedules import DuplicateSchedule, ScheduleRepository
from kat_scheduler.repositories.task_records import TaskRecord, TaskRepository

__all__ = ["DuplicateSchedule", "ScheduleRepository", "TaskRecord", "TaskRepository"]
