"""The kinds of work: boefje, normalizer and report tasks, each declared in a module of its own."""

from kat_scheduler.kinds.registry import KINDS, HandOff, Kind, register_kind

# The built-in kinds register themselves on import.
from kat_scheduler.kinds import boefje, normalizer, report  # noqa: F401  isort: skip

__all__ = ["KINDS", "HandOff", "Kind", "register_kind"]
