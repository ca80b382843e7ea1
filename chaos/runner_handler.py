"""The chaos runners' handler (SCHEDULER_RUNNER_HANDLER=chaos.runner_handler:record).

Appends one JSON line when a task starts and one when it completes to the file CHAOS_RUNNER_LOG, holding
the task CHAOS_HOLD_SECONDS in between (the work a real boefje would do). The runner's own log is the
ground truth of what ran: the suite never trusts the scheduler's records alone.

    {"event": "start" | "end", "id": task id, "identity": [parts of the work identity], "kind", "at", "pid"}
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import IO, Any

LOG_ENV = "CHAOS_RUNNER_LOG"
HOLD_ENV = "CHAOS_HOLD_SECONDS"

_lock = threading.Lock()
_file: IO[str] | None = None


def work_identity(kind: str, payload: dict[str, Any]) -> list[str | None]:
    """The parts of the work identity, as the payload models hash them (kat_scheduler.models.tasks):
    boefje [input_ooi, boefje_id, organization], normalizer [normalizer_id, boefje_meta_id, organization]."""
    if kind == "boefje":
        return [payload.get("input_ooi") or None, payload["boefje"]["id"], payload["organization"]]
    meta = payload["raw_data"]["boefje_meta"]
    return [payload["normalizer"]["id"], meta["id"], meta["organization"]]


def _write(event: str, kind: str, payload: dict[str, Any], identity: list[str | None]) -> None:
    global _file
    line = json.dumps({"event": event, "id": payload["id"], "identity": identity, "kind": kind,
                       "at": time.time(), "pid": os.getpid()})
    with _lock:
        if _file is None:
            _file = open(os.environ[LOG_ENV], "a", encoding="utf-8")  # noqa: SIM115 (kept for the process)
        _file.write(line + "\n")
        _file.flush()


def record(kind: str, payload: dict[str, Any]) -> None:
    identity = work_identity(kind, payload)
    _write("start", kind, payload, identity)
    time.sleep(float(os.environ.get(HOLD_ENV, "0.2")))  # stands for the boefje's work
    _write("end", kind, payload, identity)
