import pytest

from kat_scheduler.rankers import RANKERS, BoefjeRanker, NormalizerRanker, Ranker, RankingContext
from kat_scheduler.rankers.boefje import RESCAN_MAX_DELAY_MS, RESCAN_MIN_DELAY_MS

NOW = 1_800_000_000_000
DAY_MS = 86_400_000


def rescan(overdue_days: float, interval_days: int = 1) -> RankingContext:
    last_run = NOW - int((interval_days + overdue_days) * DAY_MS)
    return RankingContext(now_ms=NOW, last_run_ms=last_run, interval_seconds=interval_days * 86_400)


def test_boefje_order_manual_then_first_scans_then_rescans_by_lateness() -> None:
    ranker = BoefjeRanker()
    manual = ranker.rank(RankingContext(now_ms=NOW, manual=True, last_run_ms=NOW))
    first = ranker.rank(RankingContext(now_ms=NOW))
    very_late = ranker.rank(rescan(overdue_days=3))
    a_bit_late = ranker.rank(rescan(overdue_days=0.5))
    just_due = ranker.rank(rescan(overdue_days=0))
    assert manual < 0 < first < very_late < a_bit_late < just_due
    assert very_late - NOW == RESCAN_MIN_DELAY_MS
    assert just_due - NOW == RESCAN_MAX_DELAY_MS
    assert a_bit_late - NOW == (RESCAN_MIN_DELAY_MS + RESCAN_MAX_DELAY_MS) // 2


def test_lateness_is_measured_against_the_plugins_interval() -> None:
    ranker = BoefjeRanker()
    weekly_one_day_late = ranker.rank(rescan(overdue_days=1, interval_days=7))
    daily_one_day_late = ranker.rank(rescan(overdue_days=1, interval_days=1))
    assert daily_one_day_late < weekly_one_day_late


def test_manual_tasks_are_first_in_first_out() -> None:
    ranker = NormalizerRanker()
    earlier = ranker.rank(RankingContext(now_ms=NOW, manual=True))
    later = ranker.rank(RankingContext(now_ms=NOW + 1, manual=True))
    assert earlier < later < 0


def test_normalizers_are_first_in_first_out() -> None:
    ranker = NormalizerRanker()
    assert ranker.rank(RankingContext(now_ms=NOW)) == NOW
    assert ranker.rank(RankingContext(now_ms=NOW + 5)) == NOW + 5


def test_rankers_are_registered_by_name() -> None:
    assert RANKERS["boefje"] is BoefjeRanker and RANKERS["normalizer"] is NormalizerRanker


def test_a_ranker_that_breaks_its_delay_bound_is_stopped() -> None:
    class Greedy(Ranker):
        name = "greedy"
        max_delay_ms = 10

        def delay_ms(self, context: RankingContext) -> int:
            return 11

    with pytest.raises(ValueError, match="outside"):
        Greedy().rank(RankingContext(now_ms=NOW))
