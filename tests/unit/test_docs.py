"""What the pages of docs/ and README.md name must exist: every SCHEDULER_ variable is a setting (or one
the reference runner's handlers read), every `kat-scheduler` subcommand is one the CLI has, and every
docs/ page a page links to is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kat_scheduler.cli import build_parser
from kat_scheduler.config.settings import env_names
from kat_scheduler.queues.priority_queue import CLAIM_CHUNK, QUEUE_LUA

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
OTHER_VARIABLES = {"SCHEDULER_RUNNER_HOLD_SECONDS"}  # read by a reference-runner handler, not a setting


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_setting_a_page_names_exists(page: Path) -> None:
    known = env_names() | OTHER_VARIABLES
    named = set(re.findall(r"\bSCHEDULER_[A-Z0-9_]*[A-Z0-9]\b", page.read_text()))
    assert named <= known, f"{page.name} names settings that do not exist: {sorted(named - known)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_a_page_shows_exists(page: Path) -> None:
    parser = build_parser()
    commands = set(next(action for action in parser._subparsers._group_actions).choices)  # type: ignore[union-attr]
    shown = set(re.findall(r"`kat-scheduler ([a-z][a-z-]*)", page.read_text()))
    assert shown <= commands, f"{page.name} shows commands the CLI lacks: {sorted(shown - commands)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_page_a_page_names_is_there(page: Path) -> None:
    named = set(re.findall(r"\bdocs/([a-z_-]+\.(?:md|json))", page.read_text()))
    missing = {name for name in named if not (ROOT / "docs" / name).exists()}
    assert not missing, f"{page.name} names pages that are not there: {sorted(missing)}"


def test_the_claim_bounds_docs_queue_gives_are_the_code_s() -> None:
    """docs/queue.md: a claim in bulk takes up to CLAIM_CHUNK tasks a call, any other at most ONE_BY_ONE."""
    text = " ".join((ROOT / "docs" / "queue.md").read_text().split())
    one_by_one = int(re.search(r"local ONE_BY_ONE = (\d+)", QUEUE_LUA.read_text()).group(1))  # type: ignore[union-attr]
    assert f"up to `CLAIM_CHUNK` ({CLAIM_CHUNK:,}) in one script call" in text
    assert f"any other claim takes at most {one_by_one} a call" in text
