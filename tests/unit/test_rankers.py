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


@pytest.mark.parametrize("overdue_hours", [1, 6, 18])
def test_the_boefje_ranker_explains_a_rescan_with_how_overdue_it_was(overdue_hours: int) -> None:
    """explain() undoes rank(): from the score, the push time and the last run it finds the lateness again."""
    ranker = BoefjeRanker()
    context = rescan(overdue_days=overdue_hours / 24)
    words = ranker.explain(ranker.rank(context), NOW, context.last_run_ms)
    assert words.startswith(f"rescan, overdue by {overdue_hours}h00m; "), words


def test_the_boefje_ranker_explains_manual_runs_first_scans_and_very_late_rescans() -> None:
    ranker = BoefjeRanker()
    assert ranker.explain(ranker.rank(RankingContext(now_ms=NOW, manual=True)), NOW).startswith("manual run")
    assert ranker.explain(ranker.rank(RankingContext(now_ms=NOW)), NOW).startswith("first scan")
    late = rescan(overdue_days=3)
    assert ranker.explain(ranker.rank(late), NOW, late.last_run_ms).startswith(
        "rescan, overdue by a whole interval or more; 1m00s behind first scans")


def test_a_first_in_first_out_ranker_says_so() -> None:
    ranker = NormalizerRanker()
    assert ranker.explain(ranker.rank(RankingContext(now_ms=NOW)), NOW) == "first in, first out"
