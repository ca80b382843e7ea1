"""The run's sizes and the short leases and timeouts the deployment runs with."""

from __future__ import annotations

from dataclasses import dataclass

# Short leases so that recovery is quick (the deployment's environment, see deployment.py).
TASK_LEASE_SECONDS = 10.0
BEAT_LEASE_SECONDS = 3.0
BEAT_TICK_SECONDS = 0.5
SERVICE_TIMEOUT_SECONDS = 2.0  # Katalogus/Octopoes/Bytes request timeouts
KATALOGUS_CACHE_TTL = 2.0  # short, so that a Katalogus outage is felt at once
ORGANISATION_REFRESH_SECONDS = 2.0  # how soon the beat notices a newly enabled boefje
PATIENTLY_MAX_BACKOFF = 15.0  # kat_scheduler.schedulers.base.patiently: the longest wait between retries
CLIENT_ATTEMPTS = 4  # a service client's attempts per call (1 + 3 retries)
LISTENER_MAX_RECONNECT_BACKOFF = 10.0  # Listener.max_reconnect_backoff

RUNNERS = 2
RUNNER_CONCURRENCY = 8
SCHEDULER_WORKERS = 3
BEATS = 2

# The load's boefjes: every Hostname has these three; LATE_BOEFJE is enabled during the Octopoes fault.
BOEFJES = ("dns-records", "leakix", "ssl-certificates")
LATE_BOEFJE = "nmap"


@dataclass(frozen=True)
class Size:
    name: str
    organisations: int
    rate: float  # mutation events per second
    hold_seconds: float  # how long a runner holds a task
    baseline_seconds: float  # the steady state with no fault
    lead_in_seconds: float  # load before each fault, so that work is in flight
    katalogus_fault_seconds: float
    octopoes_fault_seconds: float
    rabbitmq_down_seconds: float
    redis_down_seconds: float
    malformed_seconds: float
    addresses_per_organisation: int  # objects the late boefje visits (one organisation)
    repeats: int  # how often each process kill is repeated


SIZES = {
    "small": Size("small", organisations=3, rate=5.0, hold_seconds=0.4, baseline_seconds=15, lead_in_seconds=4,
                  katalogus_fault_seconds=30, octopoes_fault_seconds=15, rabbitmq_down_seconds=5,
                  redis_down_seconds=20,
                  malformed_seconds=60, addresses_per_organisation=40, repeats=1),
    "full": Size("full", organisations=10, rate=10.0, hold_seconds=0.2, baseline_seconds=60, lead_in_seconds=10,
                 katalogus_fault_seconds=30, octopoes_fault_seconds=30, rabbitmq_down_seconds=15,
                 redis_down_seconds=20,
                 malformed_seconds=120, addresses_per_organisation=150, repeats=2),
}
