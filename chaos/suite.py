"""The run: start the deployment and the load, inject each fault in turn, check, and build the table."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from chaos.checks import IN_FLIGHT, RunnerLogs, Sampler, Snapshot, expected_identities, judge
from chaos.config import Size
from chaos.deployment import Deployment, Proc
from chaos.faults import FAULTS, Fault, Injected, baseline
from chaos.load import Load
from chaos.report import Row
from chaos.services import ServicesProcess, organisations
from kat_scheduler.models.tasks import identity_hash

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
FINAL_DRAIN_SECONDS = 90.0


class Run:
    """What the faults and checks need: the deployment, the load, the sampler and the runners' logs."""

    def __init__(self, deployment: Deployment, load: Load, sampler: Sampler) -> None:
        self.deployment = deployment
        self.size = deployment.size
        self.load = load
        self.sampler = sampler
        self.logs = RunnerLogs(deployment.runner_log_dir)
        self.kills = 0
        self._stop = threading.Event()

    def hold(self, seconds: float) -> None:
        """Let the load run for `seconds` (the pace of the experiment, not a wait for a condition)."""
        self._stop.wait(seconds)

    def deployment_services(self) -> ServicesProcess:
        assert self.deployment.services is not None
        return self.deployment.services

    def busiest_runner(self) -> Proc:
        """The live runner with the most tasks started and not ended, by the runners' logs."""
        self.logs.read()
        open_tasks: Counter[str] = Counter()
        for path in self.deployment.runner_log_dir.glob("*.jsonl"):
            runner = path.name.split(".")[0]
            for text in path.read_text(encoding="utf-8").splitlines():
                open_tasks[runner] += 1 if '"start"' in text else -1 if '"end"' in text else 0
        live = [proc for proc in self.deployment.runners if proc.alive()]
        return max(live, key=lambda proc: open_tasks[proc.name])

    def snapshot(self, timeout: float = 30.0) -> Snapshot:
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.sampler.try_sample()
            if snapshot is not None:
                return snapshot
            if time.monotonic() > deadline:
                raise TimeoutError("Redis did not answer the sampler")
            time.sleep(POLL_SECONDS)  # Redis is away: try again


def check(run: Run, name: str, window_start: float, in_flight: int, injected: Injected,
          duplicates_since: float) -> tuple[Row, float]:
    """Poll until the window's work has drained and completions flow again (or the deadline passes);
    then judge the window: its events' work, and duplicates seen since the previous check. Answers the
    row and when it was checked."""
    deadline = injected.ended + max(2 * injected.bound, 60.0)
    recovered_at: float | None = None
    while True:
        snapshot = run.sampler.try_sample()
        if snapshot is not None:
            run.logs.read()
            identities = expected_identities(run.load.published(window_start, injected.ended))
            identities |= injected.extra_identities
            verdict = judge(identities, snapshot, run.logs)
            first = run.logs.first_completion_after(injected.ended)
            if verdict.drained and first is not None and (injected.recovered is None or injected.recovered()):
                recovered_at = max(snapshot.at, first)
                break
        if time.time() > deadline:
            break
        time.sleep(POLL_SECONDS)  # the poll interval of the recovery check
    snapshot = run.snapshot()
    run.logs.read()
    verdict = judge(identities, snapshot, run.logs)
    checked = time.time()
    duplicated = {v.identity_hash for v in run.sampler.violations_between(duplicates_since, checked)}
    duplicated |= {identity_hash(identity) for identity in run.logs.completed_twice(duplicates_since, checked)}
    row = Row(name, in_flight, verdict.expected, len(verdict.lost), len(duplicated), len(verdict.stuck),
              len(verdict.failed), None if recovered_at is None else max(0.0, recovered_at - injected.ended),
              injected.bound, injected.bound_why, injected.note)
    if verdict.lost:
        logger.error("%s: lost work, e.g. %s", name, verdict.lost[:5])
    if verdict.unfinished:
        logger.error("%s: unfinished work, e.g. %s", name, verdict.unfinished[:5])
    logger.info("%s: %s", name, "PASS" if row.passed else f"FAIL ({row.why_failed()})")
    return row, checked


def final_check(run: Run, started: float) -> Row:
    """The whole run, after the load stopped: every event's work done or failed, nothing in flight."""
    stopped = time.time()
    injected = Injected(stopped, stopped, FINAL_DRAIN_SECONDS, "drain after the load stops")
    row, _ = check(run, "whole run (after the load stops)", started, 0, injected, started)
    snapshot = run.snapshot()
    row.stuck = max(row.stuck, snapshot.count(IN_FLIGHT))
    dead = run.deployment.rabbit.queue_state("scan_profile_mutations.dead")
    dead_count = dead[0] if dead else 0
    row.note = (f"{run.load.count()} events, {run.load.malformed_published} malformed, {dead_count} dead-lettered; "
                f"{run.sampler.samples} samples")
    if dead_count != run.load.malformed_published:
        logger.error("dead letters: %d, malformed messages published: %d", dead_count, run.load.malformed_published)
        row.note += " (MISMATCH)"
        row.lost += abs(run.load.malformed_published - dead_count)
    return row


def run_suite(size: Size, keep: bool = False, only: str = "") -> list[Row]:
    """Every fault in turn (or those whose name holds `only`), then the whole run's check."""
    rows: list[Row] = []
    faults = [fault for fault in FAULTS if only.lower() in fault.name.lower()]
    with Deployment(size, keep=keep) as deployment:
        deployment.start()
        sampler = Sampler(deployment.redis_client(), deployment.key_prefix)
        load = Load(deployment.rabbit.url, organisations(size.organisations), size.rate)
        run = Run(deployment, load, sampler)
        sampler.start()
        load.start()
        started = time.time()
        try:
            window_start = checked = started
            for fault in faults:
                for repeat in range(size.repeats if fault.kills else 1):
                    name = fault.name + (f" #{repeat + 1}" if fault.kills and size.repeats > 1 else "")
                    row, window_start, checked = inject_and_check(run, fault, name, window_start, checked)
                    rows.append(row)
            load.stop()
            rows.append(final_check(run, started))
        finally:
            load.stop()
            sampler.stop()
    return rows


def inject_and_check(run: Run, fault: Fault, name: str, window_start: float,
                     previous_check: float) -> tuple[Row, float, float]:
    """Let the load put work in flight, inject, check; answers the row, the end of its window of
    events and when it was checked."""
    logger.info("— %s", name)
    if fault.kills or fault.inject is not baseline:
        run.hold(run.size.lead_in_seconds)
    in_flight = run.snapshot().count(IN_FLIGHT)
    injected = fault.inject(run)
    if fault.kills:
        run.kills += 1
    row, checked = check(run, name, window_start, in_flight, injected, previous_check)
    if injected.restart is not None:
        run.deployment.restart(injected.restart)
    return row, injected.ended, checked
