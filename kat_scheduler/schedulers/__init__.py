from kat_scheduler.schedulers.base import SCHEDULERS, Scheduler, register
from kat_scheduler.schedulers.boefje import BoefjeScheduler
from kat_scheduler.schedulers.normalizer import NormalizerScheduler

__all__ = ["SCHEDULERS", "BoefjeScheduler", "NormalizerScheduler", "Scheduler", "register"]
