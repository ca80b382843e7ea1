"""The scheduler's figures for Prometheus: a collector that reads Redis whenever it is scraped.

The API serves it on its /metrics. Flower serves prometheus_client's default REGISTRY on its own
/metrics, so a Flower process shows the same series after `register()`; flowerconfig.py at the repository
root does that (`celery -A kat_scheduler flower --conf=flowerconfig.py`). docs/operations.md lists the
series. `read_figures` is also what `kat-scheduler status` prints, so the two never disagree.

Counters (claims, forwards to runners, completions, failures, reaped leases, dead letters) are the
queue's own, kept in Redis by its script, so every process that scrapes sees the same totals.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kat_scheduler.context.context import AppContext
from kat_scheduler.leadership import Leadership
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories import ScheduleRepository
from kat_scheduler.store import StoreUnavailable

logger = logging.getLogger(__name__)

def oldest_queued_ms(queue: PriorityQueue) -> int | None:
    """The push time of the longest-waiting queued task, or None when nothing is queued. Exact, and one
    read per organisation: the queue keeps its tasks in push order beside the serving order."""
    return queue.oldest_pushed_ms()


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """One kind's queue at one moment."""

    kind: str
    depth: dict[str, int]  # queued tasks per organisation
    in_flight: int  # claimed, lease held
    slots_in_use: int  # forwarded by a dispatcher and not ended
    dead_letters: int
    oldest_queued_ms: int | None
    now_ms: int

    @property
    def size(self) -> int:
        return sum(self.depth.values())

    @property
    def oldest_age_seconds(self) -> float:
        """How long the longest-waiting task has waited (0 when nothing is queued)."""
        if self.oldest_queued_ms is None:
            return 0.0
        return max(0.0, (self.now_ms - self.oldest_queued_ms) / 1000)


def read_figures(queue: PriorityQueue) -> QueueFigures:
    return QueueFigures(
        kind=queue.kind,
        depth=queue.counts(),
        in_flight=queue.in_flight(),
        slots_in_use=queue.slots_in_use(),
        dead_letters=queue.dead_count(),
        oldest_queued_ms=oldest_queued_ms(queue),
        now_ms=queue.clock_ms(),
    )


class QueueCollector(Collector):
    """Gauges per kind (queued per organisation, in flight, slots in use, dead letters, oldest wait, due
    schedules), the time left on the beat's leader lease, and whether Redis answered the scrape. A scrape
    while Redis is away reports only kat_scheduler_redis_up 0."""

    def __init__(self, queues: Mapping[str, PriorityQueue], schedules: Mapping[str, ScheduleRepository] | None = None,
                 leader: Leadership | None = None) -> None:
        self.queues = queues
        self.schedules = schedules or {}
        self.leader = leader  # the beat's leader lease, when it is to be shown

    @classmethod
    def from_context(cls, context: AppContext) -> QueueCollector:
        return cls(context.queues, context.schedules, Leadership.of_beat(context.redis, context.settings.key_prefix))

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily("kat_scheduler_redis_up", "1 when Redis answered this scrape")
        try:
            families = self._families()
        except StoreUnavailable as error:
            logger.warning("metrics: Redis did not answer: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (*families, up)

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily("kat_scheduler_queue_depth", "Queued tasks per organisation",
                                  labels=["kind", "organisation"])
        in_flight = GaugeMetricFamily("kat_scheduler_queue_in_flight", "Claimed tasks whose lease is held",
                                      labels=["kind"])
        slots = GaugeMetricFamily("kat_scheduler_queue_slots_in_use",
                                  "Tasks forwarded to the runners by a dispatcher that have not ended",
                                  labels=["kind"])
        dead = GaugeMetricFamily("kat_scheduler_queue_dead_letters", "Dead-lettered tasks", labels=["kind"])
        oldest = GaugeMetricFamily("kat_scheduler_queue_oldest_age_seconds",
                                   "How long the longest-waiting queued task has waited (0 when none)",
                                   labels=["kind"])
        due = GaugeMetricFamily("kat_scheduler_schedules_due", "Enabled schedules whose deadline has passed",
                                labels=["kind"])
        events = CounterMetricFamily("kat_scheduler_queue_events", "Tasks claimed, dispatched (forwarded to "
                                     "runners), completed, failed, requeued (expired leases) and dead-lettered",
                                     labels=["kind", "event"])
        held = GaugeMetricFamily("kat_scheduler_held_by_limit", "Queued tasks a plugin limit holds back now",
                                 labels=["kind", "plugin"])
        for kind, queue in self.queues.items():
            for state in queue.limit_states():
                held.add_metric([kind, state.plugin_id], state.held)
            for event, count in sorted(queue.stats().items()):
                events.add_metric([kind, event], count)
            figures = read_figures(queue)
            for organisation, count in sorted(figures.depth.items()):
                depth.add_metric([kind, organisation], count)
            in_flight.add_metric([kind], figures.in_flight)
            slots.add_metric([kind], figures.slots_in_use)
            dead.add_metric([kind], figures.dead_letters)
            oldest.add_metric([kind], figures.oldest_age_seconds)
            if kind in self.schedules:
                due.add_metric([kind], self.schedules[kind].due_count(figures.now_ms))
        families: list[GaugeMetricFamily | CounterMetricFamily] = [depth, in_flight, slots, dead, oldest, due, held,
                                                                    events]
        if self.leader is not None:
            _, ms_left = self.leader.holder_and_ms_left()
            lease = GaugeMetricFamily("kat_scheduler_beat_leader_lease_seconds",
                                      "Time left on the beat leader's lease (0 when no beat leads)")
            lease.add_metric([], ms_left / 1000)
            families.append(lease)
        return families

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Nothing at registration time, so registering does not call Redis."""
        return iter(())


# The collector registered in each registry, forgotten with the registry (an id could be reused by a
# later registry, which then does not hold the old collector).
_registered: weakref.WeakKeyDictionary[CollectorRegistry, QueueCollector] = weakref.WeakKeyDictionary()


def register(context: AppContext | None = None, registry: CollectorRegistry = REGISTRY) -> QueueCollector:
    """Register the queue collector in `registry` (prometheus_client's default by default), replacing one
    registered before; without a context, one is built from the environment's settings."""
    collector = QueueCollector.from_context(context or AppContext.create())
    previous = _registered.pop(registry, None)
    if previous is not None:
        registry.unregister(previous)
    registry.register(collector)
    _registered[registry] = collector
    return collector
