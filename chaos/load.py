"""The steady load: `create` mutation events of new hostnames, round-robin over the organisations, at a
fixed rate, published as Octopoes does (persistent JSON on the default exchange, durable queue without
arguments), each with publisher confirms: an event counts as published once RabbitMQ confirmed it.

Each event expects one boefje task per boefje of config.BOEFJES (three). Malformed messages can be mixed
in (`malformed_every`): they are counted, never expected to make work, and must end in the dead letters.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass

import pika
import pika.exceptions

from chaos.services import hostname
from kat_scheduler.connectors.listeners.openkat import SCAN_PROFILE_MUTATIONS
from kat_scheduler.simulation.events import scan_profile_mutation
from kat_scheduler.simulation.publisher import RabbitPublisher
from kat_scheduler.simulation.world import ooi

logger = logging.getLogger(__name__)

# Bodies OpenKAT never sends: not JSON, JSON of the wrong shape, an unknown operation, a missing field.
MALFORMED: tuple[bytes, ...] = (
    b"{this is not json",
    b"[]",
    json.dumps({"operation": "explode", "primary_key": "Hostname|internet|x.example", "value": None,
                "client_id": "org1"}).encode(),
    json.dumps({"operation": "create", "value": {"object_type": "Hostname"}}).encode(),
)


@dataclass(frozen=True, slots=True)
class Published:
    at: float  # epoch seconds, when RabbitMQ confirmed it
    organisation: str
    primary_key: str


class Load(threading.Thread):
    def __init__(self, queue_uri: str, organisations: list[str], rate: float) -> None:
        super().__init__(name="chaos-load", daemon=True)
        self.queue_uri = queue_uri
        self.organisations = organisations
        self.interval = 1.0 / rate
        self.malformed_every: int | None = None  # one malformed message per this many messages
        self.malformed_published = 0
        self.publish_failures = 0
        self._published: list[Published] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._publisher = RabbitPublisher(queue_uri, confirm=True)

    # -- what was published ------------------------------------------------------------------------

    def published(self, since: float = 0.0, until: float = float("inf")) -> list[Published]:
        with self._lock:
            return [event for event in self._published if since <= event.at < until]

    def count(self) -> int:
        with self._lock:
            return len(self._published)

    # -- running -------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        self._publisher.close()

    def run(self) -> None:
        serials = itertools.count(1)
        good_since_malformed = 0
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            every = self.malformed_every
            if every and good_since_malformed >= every - 1:
                body = MALFORMED[self.malformed_published % len(MALFORMED)]
                if self._publish(body):
                    self.malformed_published += 1
                    good_since_malformed = 0
            else:
                serial = next(serials)
                organisation = self.organisations[serial % len(self.organisations)]
                number = serial // len(self.organisations)
                primary_key = hostname(organisation, number)
                event = scan_profile_mutation(organisation, "create", primary_key, ooi(primary_key, 1))
                while not self._publish(json.dumps(event).encode()):  # the same event until it is confirmed
                    if self._stop_event.wait(0.5):
                        return
                with self._lock:
                    self._published.append(Published(time.time(), organisation, primary_key))
                good_since_malformed += 1
            next_at = max(next_at + self.interval, time.monotonic())
            self._stop_event.wait(max(0.0, next_at - time.monotonic()))

    def _publish(self, body: bytes) -> bool:
        """One confirmed publish; False (and a fresh connection next time) when it failed."""
        try:
            self._publisher.publish(SCAN_PROFILE_MUTATIONS, body)
            return True
        except (pika.exceptions.AMQPError, OSError) as error:
            self.publish_failures += 1
            if self.publish_failures % 10 == 1:
                logger.warning("load: publishing failed (%r); retrying", error)
            self._publisher.close()
            return False
