"""Queue depths for Prometheus: a collector that reads the queues whenever it is scraped.

The API serves it on /metrics. Flower serves prometheus_client's default REGISTRY on its own /metrics,
so a Flower process shows the same gauges after `register()` (e.g. from a Flower config module or a
Celery signal in the Flower process):

    from kat_scheduler import metrics
    metrics.register()   # builds an AppContext from the environment
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import redis
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kat_scheduler.context.context import AppContext
from kat_scheduler.queues import PriorityQueue, QueueUnavailable

logger = logging.getLogger(__name__)


class QueueCollector(Collector):
    """Gauges per kind: queued tasks per organisation, tasks in flight (leased), dead letters, and
    whether Redis answered the scrape. A scrape while Redis is away reports kat_scheduler_redis_up 0."""

    def __init__(self, queues: Mapping[str, PriorityQueue]) -> None:
        self.queues = queues

    @classmethod
    def from_context(cls, context: AppContext) -> QueueCollector:
        return cls(context.queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("kat_scheduler_queue_depth", "Queued tasks per organisation",
                                  labels=["kind", "organisation"])
        in_flight = GaugeMetricFamily("kat_scheduler_queue_in_flight", "Claimed tasks whose lease is held",
                                      labels=["kind"])
        dead = GaugeMetricFamily("kat_scheduler_queue_dead_letters", "Dead-lettered tasks", labels=["kind"])
        up = GaugeMetricFamily("kat_scheduler_redis_up", "1 when Redis answered this scrape")
        try:
            for kind, queue in self.queues.items():
                for organisation, count in sorted(queue.counts().items()):
                    depth.add_metric([kind, organisation], count)
                in_flight.add_metric([kind], queue.in_flight())
                dead.add_metric([kind], queue.dead_count())
        except (redis.RedisError, QueueUnavailable) as error:
            logger.warning("metrics: Redis did not answer: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (depth, in_flight, dead, up)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Nothing at registration time, so registering does not call Redis."""
        return iter(())


_registered: dict[int, QueueCollector] = {}


def register(context: AppContext | None = None, registry: CollectorRegistry = REGISTRY) -> QueueCollector:
    """Register the queue collector in `registry` (prometheus_client's default by default), replacing one
    registered before; without a context, one is built from the environment's settings."""
    collector = QueueCollector.from_context(context or AppContext.create())
    previous = _registered.pop(id(registry), None)
    if previous is not None:
        registry.unregister(previous)
    registry.register(collector)
    _registered[id(registry)] = collector
    return collector
