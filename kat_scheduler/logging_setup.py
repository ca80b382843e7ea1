"""Log output of every kat_scheduler process: text for people, JSON lines for log collectors.

`configure_logging(settings)` is called where a process starts: the CLI's `main`, and (through
Celery's `setup_logging` signal, connected when this module is imported) `celery ... beat` and
`celery ... worker`. SCHEDULER_LOGGING_FORMAT=json writes one JSON object per line; DEBUG=true lowers the
level to DEBUG.

A line about a task carries its id, kind and organisation as fields of their own, so a log collector can
filter on them and a person can grep for them:

    log = task_logger(logger, task_id=record.id, kind=record.kind, organisation=record.organisation)
    log.info("dispatched to %s", queue)

or, for a single line, `logger.info("...", extra=task_fields(...))`.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from kat_scheduler.config import Settings, load_settings

TASK_FIELDS = ("task_id", "kind", "organisation")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def task_fields(task_id: str | None = None, kind: str | None = None,
                organisation: str | None = None) -> dict[str, str]:
    """The `extra=` of a log line about a task; fields left out (None) are not added."""
    given = {"task_id": task_id, "kind": kind, "organisation": organisation}
    return {name: value for name, value in given.items() if value is not None}


class TaskLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines all carry one task's fields; a line's own `extra=` adds to them."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def task_logger(logger: logging.Logger, task_id: str | None = None, kind: str | None = None,
                organisation: str | None = None) -> TaskLoggerAdapter:
    return TaskLoggerAdapter(logger, task_fields(task_id, kind, organisation))


def _task_values(record: logging.LogRecord) -> dict[str, str]:
    return {name: str(getattr(record, name)) for name in TASK_FIELDS if getattr(record, name, None) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the task fields that are
    set, and the traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_task_values(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The usual text line, with the task fields appended as `[task_id=... kind=... organisation=...]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Formatter's own text of the time, made once a second rather than for every line."""
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return f"{self._second[1]},{int(record.msecs):03d}"  # as Formatter.default_msec_format

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _task_values(record)
        if fields:
            text += " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]"
        return text


def _skip_unused_record_fields() -> None:
    """Our formats show no source line, thread or process: logging need not look them up for every line
    (the logging HOWTO's "Optimization"). It halves the cost of a line, which matters on the API's push
    and pop, which each log one. Another handler's format that asks for them gets None."""
    logging._srcfile = None  # no caller frame walk (findCaller)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class LinesInBatches(io.TextIOBase):
    """A log stream whose lines a thread of its own writes to `target`, all that wait in one write, every
    `interval` seconds and when the process exits. For the API, which logs a line for every push and pop:
    a write to stderr for each line cost a tenth of a push. A line is out within `interval`."""

    def __init__(self, target: TextIO, interval: float = 0.05) -> None:
        super().__init__()
        self._target = target
        self._interval = interval
        self._lines: deque[str] = deque()
        self._lock = threading.Lock()  # one drain at a time, so lines go out in order
        threading.Thread(target=self._serve, name="kat-scheduler log writer", daemon=True).start()
        atexit.register(self.drain)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._lines.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing: StreamHandler flushes after every line; the thread writes them (drain)."""

    def drain(self) -> None:
        """Write what waits."""
        with self._lock:
            taken = [self._lines.popleft() for _ in range(len(self._lines))]
            if taken:
                self._target.write("".join(taken))
                self._target.flush()

    def _serve(self) -> None:
        while True:
            time.sleep(self._interval)
            try:
                self.drain()
            except (OSError, ValueError):  # stderr closed or gone: the lines cannot go anywhere
                self._lines.clear()


class _OurHandler(logging.StreamHandler[Any]):
    """Marks the handler configure_logging installed, so a second call replaces it and leaves other
    handlers (pytest's, an operator's) alone."""


_redirected: list[logging.Handler] = []  # while set (redirect_to), every line goes there alone


@contextmanager
def redirect_to(handler: logging.Handler) -> Iterator[None]:
    """Every log line goes to `handler` alone, at INFO, until the block ends; configure_logging (which
    Celery calls when an in-process worker starts) leaves it so meanwhile. The demo's log file."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    _redirected.append(handler)
    try:
        yield
    finally:
        _redirected.remove(handler)
        root.handlers = saved_handlers
        root.setLevel(saved_level)


def configure_logging(settings: Settings | None = None, *, level: int | str | None = None,
                      stream: TextIO | LinesInBatches | None = None) -> logging.Handler:
    """Send the root logger's lines to `stream` (stderr) in the configured format.

    The level is INFO, or `level` when given (Celery's --loglevel), and DEBUG whenever DEBUG is set."""
    if _redirected:
        return _redirected[-1]
    settings = settings or load_settings()
    handler = _OurHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.logging_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    _skip_unused_record_fields()
    logging.captureWarnings(True)  # Python's warnings too, in the same format (logger "py.warnings")
    chosen = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root.setLevel(logging.DEBUG if settings.debug else (chosen if isinstance(chosen, int) else logging.INFO))
    return handler


# -- Celery ---------------------------------------------------------------------------------------
# With a receiver on `setup_logging`, Celery leaves the logging set-up of beat and worker to us
# (`after_setup_logger` then never fires, so it needs no receiver). celery_app.py imports this module
# for that; importing it more than once connects once (the receiver is kept by a strong reference).


def _setup_celery_logging(loglevel: int | str | None = None, **_: Any) -> None:
    configure_logging(level=loglevel)


def _setup_early_worker_logging(options: dict[str, Any] | None = None, **_: Any) -> None:
    """A worker warns (running as root, for one) before it sets up logging: set ours up first."""
    configure_logging(level=(options or {}).get("loglevel"))


def connect_celery_signals() -> None:
    from celery.signals import celeryd_init, setup_logging

    setup_logging.connect(_setup_celery_logging, weak=False, dispatch_uid="kat_scheduler.logging_setup")
    celeryd_init.connect(_setup_early_worker_logging, weak=False, dispatch_uid="kat_scheduler.logging_setup.early")


connect_celery_signals()
