"""The Celery beat scheduler class: time-driven scheduling, by one leader at a time.

`celery -A kat_scheduler beat` uses it without flags (the app's `beat_scheduler`); `-S kat` names it
through the `celery.beat_schedulers` entry point. Static `beat_schedule` entries keep working: the
leader runs them as Celery's own scheduler would. Every `SCHEDULER_BEAT_TICK_SECONDS` the leader
also does one bounded scheduling pass:

1. reap expired leases on every queue (back to the queue, or dead-lettered; not in the first
   REAP_HOLD_SECONDS after it starts to lead or Redis comes back), and every
   `SCHEDULER_ORGANISATION_REFRESH_SECONDS` apply SCHEDULER_PLUGIN_LIMITS and
   SCHEDULER_ORGANISATION_WEIGHTS (plugin_limits.py, organisation_weights.py), and every
   SAMPLE_EVERY_SECONDS note each queue's figures for the dashboard's charts (queue_samples.py);
2. each registered scheduler's steps (`Scheduler.beat_steps`), in the order of registration: the
   boefje scheduler's look, every `SCHEDULER_ORGANISATION_REFRESH_SECONDS`, for boefjes enabled since
   the last look, its visit of existing objects for those new boefjes (pages of 1,000, for about half a
   tick) and its due schedules; the report scheduler's due schedules. A scheduler runs up to
   `SCHEDULER_SCHEDULE_BATCH_SIZE` due schedules per pass.

Each step is bounded, so a pass returns promptly; the lease is renewed between steps and by a
thread of its own (leadership.py), so a step slowed by a slow service does not let it lapse. A beat
that loses its lease stops the pass and stands by.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.beat import Scheduler as CeleryScheduler

from kat_scheduler import organisation_weights, plugin_limits
from kat_scheduler.context import AppContext
from kat_scheduler.leadership import Leadership
from kat_scheduler.queues.priority_queue import REAP_HOLD_SECONDS
from kat_scheduler.repositories.queue_samples import SAMPLE_EVERY_SECONDS, QueueSample, QueueSamples
from kat_scheduler.schedulers import SCHEDULERS, BeatPass, Scheduler
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)


class KatScheduler(CeleryScheduler):
    """Celery's scheduler plus kat_scheduler's scheduling pass, run only by the lease holder."""

    def __init__(self, app: Celery, *args: Any, context: AppContext | None = None, **kwargs: Any) -> None:
        self.context = context or AppContext.create()
        settings = self.context.settings
        self.tick_seconds = settings.beat_tick_seconds
        self.leadership = Leadership.of_beat(self.context.redis, settings.key_prefix, settings.beat_lease_seconds)
        self.schedulers: list[Scheduler] = [scheduler(self.context) for scheduler in SCHEDULERS.values()]
        self._next_pass = 0.0
        self._reap_from = 0.0  # no reaping before this (monotonic): see REAP_HOLD_SECONDS
        self._leading = False
        self._next_limits = 0.0
        self._next_sample = 0.0
        self.samples = {kind: QueueSamples(self.context.redis, settings.key_prefix, kind)
                        for kind in self.context.queues}
        self._closed = False
        super().__init__(app, *args, **kwargs)

    # -- Celery's interface ----------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Lead (run static entries and the scheduling pass) or stand by; returns seconds to sleep."""
        self.leadership.keep_alive()
        if not self.leadership.hold():
            self._leading = False
            return min(self.tick_seconds, self.leadership.lease_ms / 3000)
        if not self._leading:  # it starts to lead: perhaps after an outage that took the last leader's lease
            self._leading = True
            self._reap_from = time.monotonic() + REAP_HOLD_SECONDS
        interval: float = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now >= self._next_pass:
            self._next_pass = now + self.tick_seconds  # a pass every tick, however long the last one took
            self.scheduling_pass()
        return max(0.0, min(interval, self._next_pass - time.monotonic()))

    def close(self) -> None:
        """Give up the lease so a standby takes over at once. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self.leadership.release()
        super().close()

    # -- the scheduling pass -------------------------------------------------------------------

    def scheduling_pass(self) -> None:
        beat = BeatPass(self.tick_seconds, self.context.settings.schedule_batch_size, self.leadership.renew)
        steps: list[tuple[str, Callable[[BeatPass], object]]] = [
            ("reap expired leases", lambda _: self.reap()),
            ("apply the configured plugin limits and weights", lambda _: self.apply_configured_limits()),
            ("sample the queues for the dashboard", lambda _: self.sample_queues()),
        ]
        for scheduler in self.schedulers:
            steps += scheduler.beat_steps()
        for name, step in steps:
            if not self.leadership.renew():
                return
            try:
                step(beat)
            except StoreUnavailable as error:
                self._reap_from = time.monotonic() + REAP_HOLD_SECONDS
                logger.warning("beat: %s failed, Redis is away: %s", name, error)
            except Exception:  # one failing step (a service down, say) must not stop the others
                logger.exception("beat: %s failed; carrying on with the next step", name)

    def apply_configured_limits(self) -> None:
        if time.monotonic() < self._next_limits:
            return
        self._next_limits = time.monotonic() + self.context.settings.organisation_refresh_seconds
        plugin_limits.apply_configured(self.context)
        organisation_weights.apply_configured(self.context)

    def sample_queues(self) -> None:
        if time.monotonic() < self._next_sample:
            return
        self._next_sample = time.monotonic() + SAMPLE_EVERY_SECONDS
        for kind, queue in self.context.queues.items():
            stats = queue.stats()
            self.samples[kind].add(QueueSample(queue.clock_ms(), queue.size(), queue.in_flight(),
                                               stats.get("completed", 0) + stats.get("failed", 0)))

    def reap(self) -> None:
        if time.monotonic() < self._reap_from:
            return
        for queue in self.context.queues.values():
            result = queue.reap()
            if result.requeued or result.dead_lettered:
                logger.info("beat: %s queue: %d expired leases requeued, %d dead-lettered", queue.kind,
                            len(result.requeued), len(result.dead_lettered))
