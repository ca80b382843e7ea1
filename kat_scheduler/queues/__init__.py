from kat_scheduler.queues.connection import connect
from kat_scheduler.queues.errors import InvalidItem
from kat_scheduler.queues.priority_queue import (
    Change,
    DeadLetter,
    DeadLetterRequeue,
    Outcome,
    PriorityQueue,
    PushOutcome,
    PushResult,
    ReapResult,
)

__all__ = ["Change", "DeadLetter", "DeadLetterRequeue", "InvalidItem", "Outcome", "PriorityQueue", "PushOutcome",
           "PushResult", "ReapResult", "connect"]
