"""Log output: JSON lines with the task fields, text with the same fields, DEBUG, and Celery's signal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery.signals import setup_logging

from kat_scheduler.config import load_settings
from kat_scheduler.logging_setup import LinesInBatches, configure_logging, task_fields, task_logger
from tests.factories.waiting import wait_for

logger = logging.getLogger("kat_scheduler.test")


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    """configure_logging changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_format_writes_one_object_per_line_with_the_task_fields() -> None:
    stream = io.StringIO()
    configure_logging(load_settings(logging_format="json"), stream=stream)
    log = task_logger(logger, task_id="t-1", kind="boefje", organisation="org1")
    log.info("dispatched to %s", "boefjes")
    logger.warning("plain line", extra=task_fields(kind="normalizer"))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed\nover two lines")
    first, second, third = (json.loads(line) for line in lines(stream))
    assert first["message"] == "dispatched to boefjes" and first["level"] == "INFO"
    assert first["logger"] == "kat_scheduler.test"
    assert (first["task_id"], first["kind"], first["organisation"]) == ("t-1", "boefje", "org1")
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert second["kind"] == "normalizer" and "task_id" not in second and "organisation" not in second
    assert third["message"] == "it failed\nover two lines" and "RuntimeError: boom" in third["exception"]


def test_a_line_s_own_extra_adds_to_the_adapter_s_fields() -> None:
    stream = io.StringIO()
    configure_logging(load_settings(logging_format="json"), stream=stream)
    task_logger(logger, task_id="t-2").info("claimed", extra={"organisation": "org9"})
    [line] = (json.loads(text) for text in lines(stream))
    assert (line["task_id"], line["organisation"]) == ("t-2", "org9")


def test_text_format_shows_the_task_fields_after_the_message() -> None:
    stream = io.StringIO()
    configure_logging(load_settings(logging_format="text"), stream=stream)
    task_logger(logger, task_id="t-3", kind="boefje", organisation="org1").info("ran")
    logger.info("no task here")
    with_task, without = lines(stream)
    assert with_task.endswith("INFO kat_scheduler.test: ran [task_id=t-3 kind=boefje organisation=org1]")
    assert without.endswith("INFO kat_scheduler.test: no task here")


def test_debug_lowers_the_level_and_info_is_the_default() -> None:
    stream = io.StringIO()
    configure_logging(load_settings(), stream=stream)
    logger.debug("hidden")
    assert stream.getvalue() == "" and logging.getLogger().level == logging.INFO
    configure_logging(load_settings(debug=True), stream=stream)
    logger.debug("shown")
    assert lines(stream)[-1].endswith("DEBUG kat_scheduler.test: shown")


def test_configuring_twice_replaces_our_handler_and_keeps_others() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    configure_logging(load_settings(), stream=first)
    configure_logging(load_settings(), stream=second)
    logger.info("once")
    assert first.getvalue() == "" and len(lines(second)) == 1
    assert other in logging.getLogger().handlers


def test_celery_s_setup_logging_signal_configures_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """celery_app.py imports kat_scheduler.logging_setup; beat and worker then log in our format."""
    monkeypatch.setenv("SCHEDULER_LOGGING_FORMAT", "json")
    setup_logging.send(sender=None, loglevel="WARNING", logfile=None, format="", colorize=False)
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_OurHandler"]
    assert len(ours) == 1 and type(ours[0].formatter).__name__ == "JsonFormatter"
    assert logging.getLogger().level == logging.WARNING


def test_the_apis_log_stream_writes_its_lines_in_order_soon_and_all_of_them_at_exit() -> None:
    target = io.StringIO()
    batched = LinesInBatches(target, interval=0.02)
    configure_logging(load_settings(), stream=batched)
    for n in range(200):
        logger.info("line %d", n, extra=task_fields(f"t{n}", "boefje", "org1"))
    wait_for(lambda: len(lines(target)) == 200, timeout=5, what="the lines to be written")
    assert [line.split("line ")[1] for line in lines(target)] == \
        [f"{n} [task_id=t{n} kind=boefje organisation=org1]" for n in range(200)]
    at_exit = io.StringIO()
    slow = LinesInBatches(at_exit, interval=3600)  # its thread would not write for an hour
    slow.write("last words\n")
    slow.drain()  # what the process does at exit (atexit)
    assert at_exit.getvalue() == "last words\n"
