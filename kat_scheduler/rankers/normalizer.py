from kat_scheduler.rankers.base import Ranker, RankingContext, register


@register
class NormalizerRanker(Ranker):
    """Normalizers turn fresh boefje output into objects; first in, first out keeps that flow moving."""

    name = "normalizer"
    max_delay_ms = 0
    uses_last_run = False  # every raw file is new work: a last run per file would only grow

    def delay_ms(self, context: RankingContext) -> int:
        return 0
