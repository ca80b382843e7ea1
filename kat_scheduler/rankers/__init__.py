from kat_scheduler.rankers.base import MANUAL_LEAD_MS, RANKERS, Ranker, RankingContext, register
from kat_scheduler.rankers.boefje import BoefjeRanker
from kat_scheduler.rankers.normalizer import NormalizerRanker

__all__ = ["MANUAL_LEAD_MS", "RANKERS", "BoefjeRanker", "NormalizerRanker", "Ranker", "RankingContext",
           "register"]
