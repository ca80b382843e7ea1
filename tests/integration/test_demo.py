"""The demo in its short mode: both kinds of task run and at least one loop closes."""

from __future__ import annotations

import io

import pytest

from kat_scheduler.demo import DemoOptions, run_demo


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded stand-ins", "real Redis and RabbitMQ"])
def test_the_demo_runs_both_kinds_of_task_and_closes_the_loop(embedded: bool) -> None:
    out = io.StringIO()
    figures = run_demo(DemoOptions(seconds=12, embedded=embedded, objects=15), out=out)
    printed = out.getvalue()
    assert figures["boefje_completed"] > 0 and figures["normalizer_completed"] > 0, printed
    assert figures["closed_loops"] >= 1, printed
    assert figures["boefje_failed"] == 0 and figures["normalizer_failed"] == 0, printed
    assert ("embedded Redis-compatible server" in printed) is embedded
    assert ("in-process event bus" in printed) is embedded
    assert "summary" in printed and "closed loops:" in printed and "celery -A kat_scheduler flower" in printed
