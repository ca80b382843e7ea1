from kat_scheduler.schedulers.base import SCHEDULERS, BeatPass, BeatStep, Scheduler, Subscription, register
from kat_scheduler.schedulers.boefje import BoefjeScheduler
from kat_scheduler.schedulers.normalizer import NormalizerScheduler
from kat_scheduler.schedulers.report import ReportScheduler

__all__ = ["SCHEDULERS", "BeatPass", "BeatStep", "BoefjeScheduler", "NormalizerScheduler", "ReportScheduler",
           "Scheduler", "Subscription", "register"]
