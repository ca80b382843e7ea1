"""A simulated KAT world (Katalogus, Octopoes, Bytes and their events) for the demo, tests and benchmarks."""

from kat_scheduler.simulation.changes import Change, WorldChanges
from kat_scheduler.simulation.events import generate_mutations, publish_mutations
from kat_scheduler.simulation.publisher import EventPublisher, RabbitPublisher
from kat_scheduler.simulation.services import Faults, SimulatedKAT
from kat_scheduler.simulation.world import World

__all__ = [
    "Change",
    "EventPublisher",
    "Faults",
    "RabbitPublisher",
    "SimulatedKAT",
    "World",
    "WorldChanges",
    "generate_mutations",
    "publish_mutations",
]
