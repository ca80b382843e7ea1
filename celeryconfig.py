"""Operator overrides for Celery, read by kat_scheduler's app when it is on the Python path.

Every lower-case name here replaces kat_scheduler's default (kat_scheduler/celery_defaults.py).
The broker comes from CELERY_BROKER_URL, or the scheduler's Redis (SCHEDULER_REDIS_URL).
"""

# worker_concurrency = 2
