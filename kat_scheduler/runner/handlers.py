"""Handlers for the reference runner, chosen with SCHEDULER_RUNNER_HANDLER ("module:name").

- `unconfigured` (the default): fails every task, saying SCHEDULER_RUNNER_HANDLER is not set. A
  reference runner started against a real deployment by mistake then writes nothing anywhere.
- `noop`: does nothing; for benchmarks.
- `record_starts`: appends a start and an end line to a Redis list, so a test can see at the runner
  in which order tasks started and how many ran at once.
- `simulated`: the boefje saves its output to the simulated Bytes; the normalizer adds the objects it
  "found" to the simulated Octopoes. That closes the KAT loop of kat_scheduler.simulation.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis
import requests

from kat_scheduler.config import load_settings
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.queues import connect
from kat_scheduler.simulation.services import OctopoesService, SimulatedKAT

logger = logging.getLogger(__name__)

HOLD_ENV = "SCHEDULER_RUNNER_HOLD_SECONDS"  # how long record_starts keeps a task (simulated work)


class HandlerNotConfigured(RuntimeError):
    """The reference runner was started without SCHEDULER_RUNNER_HANDLER."""


def unconfigured(kind: str, payload: dict[str, Any]) -> None:
    """Fail the task: no work function was chosen. The simulated one writes fake results to BYTES_API,
    so it runs only when asked for."""
    raise HandlerNotConfigured(f"{kind} task {payload.get('id')}: SCHEDULER_RUNNER_HANDLER is not set, so the "
                               "reference runner does no work (choose a handler: docs/dispatch.md)")


def noop(kind: str, payload: dict[str, Any]) -> None:
    """Nothing: the runner's own cost only."""


def starts_key(prefix: str) -> str:
    return "{" + f"{prefix}:runner" + "}:starts"


class StartRecorder:
    """Appends {"event": "start"|"end", "id", "kind", "organisation", "at", "runner"} lines to a list."""

    def __init__(self, client: redis.Redis, key: str, hold_seconds: float = 0.0) -> None:
        self.client: Any = client
        self.key = key
        self.hold_seconds = hold_seconds
        self.runner = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        self._append("start", kind, payload)
        if self.hold_seconds:
            time.sleep(self.hold_seconds)  # stands for the work a real boefje does
        self._append("end", kind, payload)

    def _append(self, event: str, kind: str, payload: dict[str, Any]) -> None:
        organisation = payload.get("organization") or payload.get("raw_data", {}).get("boefje_meta", {}).get(
            "organization")
        self.client.rpush(self.key, json.dumps({"event": event, "id": payload["id"], "kind": kind,
                                                "organisation": organisation, "at": time.time(),
                                                "runner": self.runner}))


def read_starts(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    """What a StartRecorder wrote, in order."""
    return [json.loads(line) for line in client.lrange(key, 0, -1)]


def max_concurrency(lines: list[dict[str, Any]]) -> int:
    """The most tasks that were between their start and end at one time."""
    running = peak = 0
    for line in lines:
        running += 1 if line["event"] == "start" else -1
        peak = max(peak, running)
    return peak


_recorder: StartRecorder | None = None


def record_starts(kind: str, payload: dict[str, Any]) -> None:
    """A StartRecorder on SCHEDULER_REDIS_URL, key "<SCHEDULER_KEY_PREFIX>:runner:starts"."""
    global _recorder
    if _recorder is None:
        settings = load_settings()
        _recorder = StartRecorder(connect(settings.redis_url), starts_key(settings.key_prefix),
                                  float(os.environ.get(HOLD_ENV, "0") or 0))
    _recorder(kind, payload)


class SimulatedRunner:
    """Runs tasks against the simulated KAT: Bytes over HTTP; Octopoes in-process when it is at hand.

    The simulated Octopoes has no HTTP call that adds objects (nor has Octopoes' read API in the
    contracts), so a normalizer adds its objects through the OctopoesService when one is bound
    (`use_simulation`), and otherwise only logs what it would have added.
    """

    def __init__(self, bytes_url: str, username: str, password: str, octopoes: OctopoesService | None = None,
                 timeout: float = 10.0) -> None:
        self.bytes_url = bytes_url.rstrip("/")
        self.username = username
        self.password = password
        self.octopoes = octopoes
        self.timeout = timeout
        self._session = requests.Session()
        self._token: str | None = None
        self._lock = threading.Lock()

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "boefje":
            self.run_boefje(payload)
        elif kind == "normalizer":
            self.run_normalizer(payload)
        else:
            self.run_other(kind, payload)

    def run_other(self, kind: str, payload: dict[str, Any]) -> None:
        """A report (or a kind this runner does not simulate): the work is only logged as done."""
        organisation = str(payload.get("organisation_id") or payload.get("organization") or "?")
        logger.info("task %s (%s, organisation %s): made (simulated)", payload.get("id"), kind, organisation,
                    extra=task_fields(str(payload.get("id")), kind, organisation))

    def run_boefje(self, payload: dict[str, Any]) -> None:
        """Save a boefje meta (its id is the task's, as OpenKAT's runner does) and a raw file; Bytes
        then publishes raw_file_received. The run's siblings (other organisations' tasks it stands for)
        get a copy of both under their own ids, as OpenKAT's runner copies raw files."""
        boefje_id = payload["boefje"]["id"]
        now = datetime.now(UTC).isoformat()
        found = derived_objects(payload.get("input_ooi"))
        for task_id, organisation in [(payload["id"], payload["organization"]),
                                      *((s["id"], s["organization"]) for s in payload.get("siblings", []))]:
            meta = {"id": task_id, "boefje": {"id": boefje_id, "version": payload["boefje"].get("version")},
                    "input_ooi": payload.get("input_ooi"), "arguments": {}, "organization": organisation,
                    "started_at": now, "ended_at": now}
            self._bytes("POST", "/bytes/boefje_meta", json=meta)
            self._bytes("POST", "/bytes/raw", params={"boefje_meta_id": task_id,
                                                      "mime_types": [f"boefje/{boefje_id}", "application/json"]},
                        data=json.dumps({"found": found}).encode())

    def run_normalizer(self, payload: dict[str, Any]) -> None:
        """Add the objects the boefje found (derived again from its input) to Octopoes, which publishes
        a scan profile mutation for each new one; its boefje tasks follow from those."""
        meta = payload["raw_data"]["boefje_meta"]
        organisation, input_ooi = meta["organization"], meta.get("input_ooi")
        found = derived_objects(input_ooi)
        if self.octopoes is None:
            logger.warning("task %s (normalizer, organisation %s): no Octopoes bound, would add %s",
                           payload["id"], organisation, found,
                           extra=task_fields(payload["id"], "normalizer", organisation))
            return
        known = self.octopoes.world.oois.get(organisation, {})
        source = known.get(input_ooi or "") or {}
        level = (source.get("scan_profile") or {}).get("level")
        for primary_key in found:
            if primary_key not in known:
                self.octopoes.add_object(organisation, primary_key, level)

    def _bytes(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One Bytes call with the bearer token; a 401 logs in again and retries once."""
        for attempt in (1, 2):
            token = self._login(force=attempt == 2)
            response = self._session.request(method, self.bytes_url + path, timeout=self.timeout,
                                             headers={"Authorization": f"bearer {token}"}, **kwargs)
            if response.status_code != 401:
                response.raise_for_status()
                return response
        response.raise_for_status()
        return response

    def _login(self, force: bool = False) -> str:
        with self._lock:
            if self._token is None or force:
                response = self._session.post(self.bytes_url + "/token", timeout=self.timeout,
                                              data={"username": self.username, "password": self.password})
                response.raise_for_status()
                self._token = str(response.json()["access_token"])
            return self._token


def derived_objects(input_ooi: str | None) -> list[str]:
    """What a simulated boefje "finds" on an object: a hostname resolves to an address, an address has
    an open port. Finite on purpose, so the simulated loop comes to rest."""
    if not input_ooi:
        return []
    object_type, _, rest = input_ooi.partition("|")
    if object_type == "Hostname":
        network, _, name = rest.partition("|")
        number = sum(name.encode()) % 250 + 1
        return [f"IPAddressV4|{network}|10.{len(name) % 250}.{number // 250}.{number}"]
    if object_type == "IPAddressV4":
        return [f"IPPort|{rest}|tcp|443"]
    return []


_simulated: SimulatedRunner | None = None


def use_simulation(kat: SimulatedKAT, username: str = "bytes", password: str = "bytes") -> SimulatedRunner:
    """Bind `simulated` to an in-process SimulatedKAT (its Bytes URL and its Octopoes)."""
    global _simulated
    _simulated = SimulatedRunner(kat.bytes_url, username, password, kat.octopoes)
    return _simulated


def simulated(kind: str, payload: dict[str, Any]) -> None:
    """The simulated world's runner; from BYTES_API and friends unless `use_simulation` bound one."""
    global _simulated
    if _simulated is None:
        settings = load_settings()
        _simulated = SimulatedRunner(settings.bytes_api, settings.bytes_username, settings.bytes_password,
                                     timeout=settings.bytes_request_timeout)
    _simulated(kind, payload)
