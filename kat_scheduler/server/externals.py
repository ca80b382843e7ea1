"""Whether the services kat_scheduler talks to answer, for /health?externals=true.

They are asked by one probe at a time, on its own thread, at most once per PROBE_MAX_AGE_SECONDS: a
request waits at most PROBE_BUDGET_SECONDS for a fresh answer and otherwise gets the last one with its
age, so that no number of health checks against a service that never answers can hold the API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pika

from kat_scheduler.context.context import AppContext
from kat_scheduler.store import StoreClient, StoreUnavailable

logger = logging.getLogger(__name__)
RABBITMQ_TIMEOUT_SECONDS = 2.0
PROBE_MAX_AGE_SECONDS = 10.0
PROBE_BUDGET_SECONDS = 2.0
OCTOPOES_PROBE_ORGANISATION = "_dev"  # used when Katalogus names no organisation to ask Octopoes about


def redis_up(context: AppContext) -> bool:
    try:
        return bool(StoreClient(context.redis, "health").ping())
    except StoreUnavailable as error:
        logger.warning("health: Redis did not answer: %s", error)
        return False


def rabbitmq_up(url: str, timeout: float = RABBITMQ_TIMEOUT_SECONDS) -> bool:
    """Open and close one AMQP connection, without retries."""
    try:
        parameters = pika.URLParameters(url)
        parameters.socket_timeout = timeout
        parameters.stack_timeout = timeout
        parameters.blocked_connection_timeout = timeout
        parameters.connection_attempts = 1
        parameters.retry_delay = 0
        pika.BlockingConnection(parameters).close()
    except Exception as error:  # pika raises many types; any of them means "not reachable"
        logger.warning("health: RabbitMQ did not answer: %s", type(error).__name__)
        return False
    return True


def octopoes_up(context: AppContext) -> bool:
    """Octopoes answers health per organisation: ask about the first one Katalogus knows."""
    try:
        organisations = context.katalogus.get_organisations()
    except Exception:
        organisations = []
    organisation = organisations[0].id if organisations else OCTOPOES_PROBE_ORGANISATION
    return context.octopoes.health(organisation)


def externals(context: AppContext) -> dict[str, bool]:
    probes: dict[str, Callable[[], bool]] = {
        "katalogus": context.katalogus.health,
        "octopoes": lambda: octopoes_up(context),
        "bytes": context.bytes.health,
        "redis": lambda: redis_up(context),
        "rabbitmq": lambda: rabbitmq_up(context.settings.queue_uri),
    }
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(probe) for name, probe in probes.items()}
    return {name: _outcome(name, future.result) for name, future in futures.items()}


EXTERNALS = ("katalogus", "octopoes", "bytes", "redis", "rabbitmq")


class ExternalsProbe:
    """The last answer of `externals`, asked again when it is older than `max_age` (see the module)."""

    def __init__(self, context: AppContext, max_age: float = PROBE_MAX_AGE_SECONDS,
                 budget: float = PROBE_BUDGET_SECONDS) -> None:
        self.context = context
        self.max_age = max_age
        self.budget = budget
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-probe")
        self._running: Future[None] | None = None
        self._last: tuple[float, dict[str, bool]] | None = None  # monotonic time, results

    def read(self) -> tuple[dict[str, bool], float | None]:
        """The services' health and its age in seconds (None, with every service unhealthy, when no
        probe has finished yet)."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.max_age:
                return self._answer(self._last)
            if self._running is None:
                self._running = self._pool.submit(self._probe)
            running = self._running
        try:
            running.result(timeout=self.budget)
        except FutureTimeout:
            logger.warning("health: the services' probe takes longer than %.0fs; answering the last one",
                           self.budget)
        with self._lock:
            return self._answer(self._last)

    def _probe(self) -> None:
        try:
            results = externals(self.context)
        finally:
            with self._lock:
                self._running = None
        with self._lock:
            self._last = (time.monotonic(), results)

    @staticmethod
    def _answer(last: tuple[float, dict[str, bool]] | None) -> tuple[dict[str, bool], float | None]:
        if last is None:
            return dict.fromkeys(EXTERNALS, False), None
        return dict(last[1]), round(time.monotonic() - last[0], 3)


def _outcome(name: str, result: Callable[[], bool]) -> bool:
    try:
        return bool(result())
    except Exception as error:  # a probe that raises is a service that is not healthy
        logger.warning("health: %s check failed: %s", name, error)
        return False
