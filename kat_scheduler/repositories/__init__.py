from kat_scheduler.repositories.task_records import TaskRecord, TaskRepository

__all__ = ["TaskRecord", "TaskRepository"]
