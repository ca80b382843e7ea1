"""The simulated KAT services (Katalogus, Octopoes, Bytes) in a process of their own, with a control pipe.

The parent sends commands over a multiprocessing pipe and gets "ok" (or the error) back:

    ("faults", service, {"error_rate": 1.0})   set fault knobs of one service (see simulation.Faults)
    ("reset", service)                         a healthy service again
    ("enable", organisation, plugin_id, bool)  switch a plugin for an organisation in Katalogus
    ("stop",)                                  stop the services and end the process
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from chaos.config import BOEFJES, LATE_BOEFJE
from kat_scheduler.simulation import SimulatedKAT, World
from kat_scheduler.simulation.world import JSON, ooi

logger = logging.getLogger(__name__)


def organisations(count: int) -> list[str]:
    return [f"org{number}" for number in range(1, count + 1)]


def hostname(organisation: str, number: int) -> str:
    return f"Hostname|internet|h{number}.{organisation}.example"


def address(organisation: str, number: int) -> str:
    org_number = int(organisation.removeprefix("org"))
    return f"IPAddressV4|internet|10.{org_number}.{number // 250}.{number % 250 + 1}"


def plugin(plugin_id: str, consumes: str) -> JSON:
    return {"id": plugin_id, "type": "boefje", "name": plugin_id, "version": None, "scan_level": 1,
            "consumes": [consumes], "produces": [f"boefje/{plugin_id}"], "cron": None, "interval": None,
            "run_on": None, "oci_image": None}


def build_world(organisation_count: int, addresses: int) -> World:
    """The load's boefjes consume Hostname; LATE_BOEFJE (disabled until the Octopoes fault) consumes the
    addresses. Octopoes knows the addresses (level 1); hostnames arrive through the load's events."""
    orgs = organisations(organisation_count)
    plugins = {boefje: plugin(boefje, "Hostname") for boefje in BOEFJES}
    plugins[LATE_BOEFJE] = plugin(LATE_BOEFJE, "IPAddressV4")
    return World(
        seed=0,
        organisations={org: {"id": org, "name": org} for org in orgs},
        oois={org: {address(org, n): ooi(address(org, n), 1) for n in range(addresses)} for org in orgs},
        plugins=plugins,
        enabled={org: {**dict.fromkeys(BOEFJES, True), LATE_BOEFJE: False} for org in orgs},
    )


def serve(organisation_count: int, addresses: int, control: Connection) -> None:
    """The child process: start the services, send their URLs, then obey commands until "stop"."""
    logging.basicConfig(level=logging.WARNING)
    kat = SimulatedKAT.start(build_world(organisation_count, addresses))
    control.send((kat.katalogus_url, kat.octopoes_url, kat.bytes_url))
    try:
        while True:
            command = control.recv()
            try:
                if command[0] == "stop":
                    control.send("ok")
                    return
                apply(kat, command)
                control.send("ok")
            except Exception as error:  # answer the parent rather than die
                control.send(f"error: {error!r}")
    except EOFError:
        return  # the parent went away
    finally:
        kat.stop()


def apply(kat: SimulatedKAT, command: tuple[Any, ...]) -> None:
    services = {service.name: service for service in kat.services}
    if command[0] == "faults":
        _, name, knobs = command
        for knob, value in knobs.items():
            setattr(services[name].faults, knob, value)
    elif command[0] == "reset":
        services[command[1]].faults.reset()
    elif command[0] == "enable":
        _, organisation, plugin_id, enabled = command
        kat.katalogus.set_enabled(organisation, plugin_id, enabled)
    else:
        raise ValueError(f"unknown command {command!r}")


@dataclass
class ServicesProcess:
    """The parent's handle on the services' process."""

    process: multiprocessing.process.BaseProcess
    control: Connection
    katalogus_url: str
    octopoes_url: str
    bytes_url: str

    @classmethod
    def start(cls, organisation_count: int, addresses: int, timeout: float = 30.0) -> ServicesProcess:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=serve, args=(organisation_count, addresses, child), daemon=True,
                                  name="chaos-kat-services")
        process.start()
        if not parent.poll(timeout):
            process.kill()
            raise RuntimeError("the simulated KAT services did not start")
        katalogus, octopoes, bytes_api = parent.recv()
        return cls(process, parent, katalogus, octopoes, bytes_api)

    def command(self, *command: Any) -> None:
        self.control.send(command)
        if not self.control.poll(10):
            raise RuntimeError(f"the simulated services did not answer {command!r}")
        answer = self.control.recv()
        if answer != "ok":
            raise RuntimeError(f"the simulated services refused {command!r}: {answer}")

    def set_faults(self, service: str, **knobs: float | int) -> None:
        self.command("faults", service, knobs)

    def reset(self, service: str) -> None:
        self.command("reset", service)

    def enable(self, organisation: str, plugin_id: str, enabled: bool = True) -> None:
        self.command("enable", organisation, plugin_id, enabled)

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.command("stop")
            except (OSError, RuntimeError, EOFError):
                logger.warning("the simulated services did not stop cleanly", exc_info=True)
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.control.close()
