"""What every `kat-scheduler` command shares: exit codes, the Redis session, and output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from kat_scheduler.config import Settings
from kat_scheduler.context import AppContext
from kat_scheduler.queues import connect
from kat_scheduler.queues.errors import redacted_url
from kat_scheduler.store import StoreClient, StoreUnavailable


class ExitCode(IntEnum):
    """What a script can rely on (docs/operations.md)."""

    OK = 0
    EMPTY = 1  # a listing found nothing
    USAGE = 2  # bad arguments or settings
    REFUSED = 3  # the queue said no: already queued or running, not cancellable, queue full
    NOT_FOUND = 4  # no such task, dead letter, plugin or object
    UNAVAILABLE = 5  # Redis (or a service) did not answer; worth retrying


EXIT_CODES_HELP = """exit codes:
  0  ok
  1  nothing found (an empty listing)
  2  usage or settings error
  3  refused (already queued or running, not cancellable, queue full)
  4  not found (task, dead letter, plugin, object)
  5  Redis unreachable (check SCHEDULER_REDIS_URL; worth retrying)"""


class CommandError(Exception):
    """Ends a command with `code`; the message goes to stderr and says what to do."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def unreachable(settings: Settings, error: StoreUnavailable) -> CommandError:
    cause = error.cause
    return CommandError(ExitCode.UNAVAILABLE, f"Redis at {redacted_url(settings.redis_url)} is unreachable: "
                        f"{cause} — is SCHEDULER_REDIS_URL right, and is Redis running?")


@contextmanager
def session(settings: Settings) -> Iterator[AppContext]:
    """An AppContext on a Redis client that gives up quickly (a person is waiting); Redis errors while
    the command runs become CommandError(UNAVAILABLE) naming the URL and the setting."""
    client = connect(settings.redis_url, retries=1, timeout=3.0)
    try:
        StoreClient(client, "command").ping()
    except StoreUnavailable as error:
        client.close()
        raise unreachable(settings, error) from None
    context = AppContext.create(settings, redis_client=client)
    try:
        yield context
    except StoreUnavailable as error:
        raise unreachable(settings, error) from None
    finally:
        context.close()


# -- output ---------------------------------------------------------------------------------------


def emit_json(document: Any) -> None:
    """One JSON document on stdout."""
    json.dump(document, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[n]) for row in cells) for n in range(len(headers))]
    return "\n".join(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def error(message: str) -> None:
    print(f"kat-scheduler: {message}", file=sys.stderr)
