from kat_scheduler.rankers.base import Ranker, RankingContext, register


@register
class ReportRanker(Ranker):
    """Reports run in the order they fall due: a recipe's report is not better for being late."""

    name = "report"
    max_delay_ms = 0
    uses_last_run = False  # a recipe's schedule says when it runs again, not the last report

    def delay_ms(self, context: RankingContext) -> int:
        return 0
