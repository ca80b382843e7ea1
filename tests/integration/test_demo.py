"""The demo in its short mode: both kinds of task run and at least one loop closes."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from kat_scheduler.demo import DemoOptions, run_demo


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded stand-ins", "real Redis and RabbitMQ"])
def test_the_demo_runs_both_kinds_of_task_and_closes_the_loop(embedded: bool, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    out = io.StringIO()
    figures = run_demo(DemoOptions(seconds=12, embedded=embedded, objects=15), out=out)
    printed = out.getvalue()
    # The screen is the live view's: every log line went to the file the demo names, none to the screen.
    [log_file] = re.findall(r"every log line .* goes to (\S+)", printed)
    assert Path(log_file).read_text().count(" INFO ") > 10
    assert [record.name for record in caplog.records] == []
    assert figures["boefje_completed"] > 0 and figures["normalizer_completed"] > 0, printed
    assert figures["closed_loops"] >= 1, printed
    assert figures["boefje_failed"] == 0 and figures["normalizer_failed"] == 0, printed
    assert ("embedded Redis-compatible server" in printed) is embedded
    assert ("in-process event bus" in printed) is embedded
    assert "summary" in printed and "closed loops:" in printed and "celery -A kat_scheduler flower" in printed
