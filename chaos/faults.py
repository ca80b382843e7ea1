"""One function per fault. Each injects its fault into the running deployment, waits out its duration
(if it has one) and answers an Injected: when the fault began and ended, the recovery bound and why, and
what else recovery needs (work the fault itself creates, a condition, a process to restart afterwards)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chaos import config
from chaos.deployment import Proc, rabbitmqctl, wait_for
from chaos.services import address, organisations
from kat_scheduler.connectors.listeners.openkat import SCAN_PROFILE_MUTATIONS
from kat_scheduler.dispatcher import DispatchOptions

if TYPE_CHECKING:
    from chaos.checks import Identity
    from chaos.suite import Run

logger = logging.getLogger(__name__)

TWICE_THE_TASK_LEASE = (2 * config.TASK_LEASE_SECONDS, f"2 x task lease ({config.TASK_LEASE_SECONDS:g} s)")


@dataclass
class Injected:
    started: float  # epoch seconds
    ended: float  # when the fault was over (the kill, or the service back)
    bound: float  # recovery must take no longer, counted from `ended`
    bound_why: str
    extra_identities: set[Identity] = field(default_factory=set)  # work the fault's own scenario asks for
    recovered: Callable[[], bool] | None = None  # a further condition of recovery
    restart: Proc | None = None  # start again after the check, so the next fault meets a full deployment
    note: str = ""


def now() -> float:
    return time.time()


def baseline(run: Run) -> Injected:
    """No fault: two beats, three scheduler workers and two runners at once under the steady load."""
    started = now()
    run.hold(run.size.baseline_seconds)
    return Injected(started, now(), *TWICE_THE_TASK_LEASE, note=f"{run.size.baseline_seconds:g} s of load")


def kill_runner(run: Run) -> Injected:
    """SIGKILL of a runner with tasks in hand: RabbitMQ redelivers them to the other runner."""
    victim = run.busiest_runner()
    started = now()
    victim.kill()
    return Injected(started, started, *TWICE_THE_TASK_LEASE, restart=victim, note=victim.name)


_DISPATCH = DispatchOptions()  # the runners' dispatchers run with the defaults
LOST_RUNNER_BOUND = (_DISPATCH.lost_runner_grace + _DISPATCH.reap_seconds,
                     f"lost-runner grace + reap interval ({_DISPATCH.lost_runner_grace:g} s + "
                     f"{_DISPATCH.reap_seconds:g} s)")


def restart_runner_same_name(run: Run) -> Injected:
    """SIGKILL of a runner with tasks in hand, started again at once under the same `-n` name, as a
    container with a restart policy comes back: its heartbeats must not keep the lost tasks alive."""
    victim = run.busiest_runner()
    started = now()
    victim.kill()
    run.deployment.restart(victim)  # same argv, so the same node name
    return Injected(started, now(), *LOST_RUNNER_BOUND, note=f"{victim.name}, same name")


def kill_scheduler_worker(run: Run) -> Injected:
    """SIGKILL of a scheduler worker: its unacked events go to the other listeners, its claims come
    back through their leases."""
    victim = run.deployment.workers[run.kills % len(run.deployment.workers)]
    started = now()
    victim.kill()
    return Injected(started, started, *TWICE_THE_TASK_LEASE, restart=victim, note=victim.name)


def kill_leader_beat(run: Run) -> Injected:
    """SIGKILL of the beat holding the leader lease: the standby leads within a lease."""
    leader = wait_for(run.deployment.leader, 10, "a leading beat")
    started = now()
    leader.kill()

    def standby_leads() -> bool:
        new = run.deployment.leader()
        return new is not None and new is not leader

    return Injected(started, started, 2 * config.BEAT_LEASE_SECONDS,
                    f"2 x beat lease ({config.BEAT_LEASE_SECONDS:g} s)", recovered=standby_leads, restart=leader,
                    note=f"{leader.name} led")


def restart_redis(run: Run) -> Injected:
    """SIGKILL of redis-server, then a new one on the same port and AOF directory."""
    started = now()
    run.deployment.redis.kill()
    run.deployment.redis.start()
    return Injected(started, now(), *TWICE_THE_TASK_LEASE, note="SIGKILL, AOF everysec")


def stop_redis(run: Run) -> Injected:
    """redis-server stopped (SIGKILL) and kept down for a while, then started on the same port and AOF:
    the events wait in RabbitMQ, the dispatcher, the beat and the runners' marks sit the outage out."""
    started = now()
    run.deployment.redis.kill()
    run.hold(run.size.redis_down_seconds)
    run.deployment.redis.start()
    bound = 2 * config.PATIENTLY_MAX_BACKOFF + config.TASK_LEASE_SECONDS
    return Injected(started, now(), bound,
                    f"2 x handler retry backoff + task lease ({config.PATIENTLY_MAX_BACKOFF:g} s, "
                    f"{config.TASK_LEASE_SECONDS:g} s)", note=f"down {run.size.redis_down_seconds:g} s")


def restart_rabbitmq(run: Run) -> Injected:
    """`rabbitmqctl stop_app`, down a while, `start_app`: every connection of every process is cut."""
    logger.warning("restarting the machine's RabbitMQ (stop_app/start_app): every user of it is cut off")
    started = now()
    rabbitmqctl("stop_app")
    run.hold(run.size.rabbitmq_down_seconds)
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")
    bound = 2 * config.LISTENER_MAX_RECONNECT_BACKOFF
    return Injected(started, now(), bound,
                    f"2 x listener reconnect backoff ({config.LISTENER_MAX_RECONNECT_BACKOFF:g} s)",
                    note=f"down {run.size.rabbitmq_down_seconds:g} s")


def katalogus_errors(run: Run) -> Injected:
    """Katalogus answers 500 to everything: events wait (unacknowledged) and are handled afterwards."""
    seconds = run.size.katalogus_fault_seconds
    started = now()
    run.deployment_services().set_faults("katalogus", error_rate=1.0)
    run.hold(seconds)
    run.deployment_services().reset("katalogus")
    return Injected(started, now(), 2 * config.PATIENTLY_MAX_BACKOFF,
                    f"2 x handler retry backoff ({config.PATIENTLY_MAX_BACKOFF:g} s)", note=f"{seconds:g} s of 500s")


def octopoes_timeouts(run: Run) -> Injected:
    """Octopoes hangs past the client's timeout while a boefje is enabled: the beat's visit of the
    existing objects for the new boefje must wait and then complete."""
    seconds = run.size.octopoes_fault_seconds
    services = run.deployment_services()
    organisation = organisations(run.size.organisations)[0]
    started = now()
    services.set_faults("octopoes", timeout_rate=1.0, hang_seconds=config.SERVICE_TIMEOUT_SECONDS * 3)
    services.enable(organisation, config.LATE_BOEFJE)
    run.hold(seconds)
    services.reset("octopoes")
    extra: set[Identity] = {(address(organisation, n), config.LATE_BOEFJE, organisation)
             for n in range(run.size.addresses_per_organisation)}
    one_call = config.CLIENT_ATTEMPTS * config.SERVICE_TIMEOUT_SECONDS + config.ORGANISATION_REFRESH_SECONDS
    return Injected(started, now(), 2 * one_call,
                    f"2 x (Octopoes timeout x attempts + refresh) ({one_call:g} s)", extra_identities=extra,
                    note=f"{seconds:g} s; {config.LATE_BOEFJE} enabled in {organisation} "
                         f"({len(extra)} objects)")


def malformed_events(run: Run) -> Injected:
    """1 % malformed messages mixed into the load: each is dead-lettered, the good ones all scheduled."""
    started = now()
    before, good_before = run.load.malformed_published, run.load.count()
    run.load.malformed_every = 100
    run.hold(run.size.malformed_seconds)
    run.load.malformed_every = None
    sent = run.load.malformed_published - before

    def all_dead_lettered() -> bool:
        state = run.deployment.rabbit.queue_state(f"{SCAN_PROFILE_MUTATIONS}.dead")
        return state is not None and state[0] >= run.load.malformed_published

    return Injected(started, now(), *TWICE_THE_TASK_LEASE, recovered=all_dead_lettered,
                    note=f"{sent} malformed among {run.load.count() - good_before} good events")


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Run], Injected]
    kills: bool = False  # a process kill, repeated `Size.repeats` times


FAULTS: tuple[Fault, ...] = (
    Fault("baseline: 2 beats, 3 scheduler workers, 2 runners", baseline),
    Fault("SIGKILL a runner", kill_runner, kills=True),
    Fault("SIGKILL a scheduler worker", kill_scheduler_worker, kills=True),
    Fault("SIGKILL the leader beat", kill_leader_beat, kills=True),
    Fault("runner restarted under the same name", restart_runner_same_name, kills=True),
    Fault("Redis restart (SIGKILL, AOF)", restart_redis, kills=True),
    Fault("Redis stopped for 20 s", stop_redis),
    Fault("RabbitMQ restart (stop_app/start_app)", restart_rabbitmq),
    Fault("Katalogus answers 500 for 30 s", katalogus_errors),
    Fault("Octopoes times out", octopoes_timeouts),
    Fault("1 % malformed events", malformed_events),
)
