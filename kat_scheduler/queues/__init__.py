from kat_scheduler.queues.connection import connect
from kat_scheduler.queues.errors import InvalidItem
from kat_scheduler.queues.priority_queue import PriorityQueue, PushOutcome, PushResult, ReapResult

__all__ = ["InvalidItem", "PriorityQueue", "PushOutcome", "PushResult", "ReapResult",
           "connect"]
