"""The demo in its short mode: both kinds of task run, a loop closes, and the show shows what it says it
shows: a manual run served first, a killed runner's task recovered, two organisations served in turns.
Every figure is read from Redis by the demo (demo/story.py), not taken from its script."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from kat_scheduler.demo import DemoOptions, run_demo

NARRATION = re.compile(r"^\s+\d+\.\d s  ", re.MULTILINE)  # a journal line: the second of the run, then words


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded stand-ins", "real Redis and RabbitMQ"])
def test_the_demo_shows_the_scheduler_at_work(embedded: bool, caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    figures = run_demo(DemoOptions(seconds=14, embedded=embedded, objects=15, port=0), out=out)
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
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/dashboard", printed), printed
    assert len(NARRATION.findall(printed)) >= 8, printed
    assert "what the show showed" in printed, printed

    # A manual run jumps the queue: handed out before every task that was waiting when it was pushed.
    assert figures["manual_served_position"] == 1, printed
    assert figures["manual_served_before_waiting"] > 0, printed
    # The killed pull runner's task: its lease ran out, it was queued again and a Celery runner completed it.
    assert figures["killed_runner_tasks"] == 1 and figures["recovered_tasks"] == 1, printed
    # The flooding and the trickling organisation were served in turns.
    assert figures["flood_served"] > 0 and figures["trickle_served"] > 0, printed
    assert figures["turns_alternated"] >= 2, printed
