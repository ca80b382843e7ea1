"""Changes to a running simulated world, made as OpenKAT makes them: new objects, scan levels raised
and lowered, objects deleted.

Each change goes through the simulated Octopoes, which publishes its scan profile mutation, so a
scheduler listening sees what it would see from OpenKAT. A `WorldChanges` remembers what it made,
so a demo or a test can tell the objects it created from those the normalizers found.

    changes = WorldChanges(kat.octopoes, seed=1)
    for number in range(30):
        changes.steady("org1", number)      # mostly new objects and level changes, now and then a delete
    changes.flood("org2", 200)              # 200 new hostnames at once
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from kat_scheduler.simulation.services import OctopoesService
from kat_scheduler.simulation.world import JSON

NEW_OBJECT = "new object"
LEVEL_RAISED = "level raised"
LEVEL_LOWERED = "level lowered"
DELETED = "deleted"

# The rhythm of a steady stream of changes: mostly new objects and level changes, one delete in twelve.
STEADY_RHYTHM = (NEW_OBJECT, LEVEL_RAISED, LEVEL_LOWERED, NEW_OBJECT, LEVEL_RAISED, NEW_OBJECT,
                 LEVEL_LOWERED, NEW_OBJECT, LEVEL_RAISED, LEVEL_LOWERED, NEW_OBJECT, DELETED)
HIGHEST_LEVEL = 4


@dataclass(frozen=True, slots=True)
class Change:
    what: str  # NEW_OBJECT, LEVEL_RAISED, LEVEL_LOWERED or DELETED
    organisation: str
    primary_key: str
    level: int | None  # the object's scan level after the change; None once deleted


def level_of(ooi: JSON) -> int | None:
    profile = ooi.get("scan_profile")
    return None if profile is None else int(profile["level"])


class WorldChanges:
    """Makes changes through one simulated Octopoes and keeps a list of them; safe to share between threads."""

    def __init__(self, octopoes: OctopoesService, seed: int = 0) -> None:
        self.octopoes = octopoes
        self.made: list[Change] = []
        self._spared: set[tuple[str, str]] = set()
        self._rng = random.Random(seed)
        self._serial = 0
        self._lock = threading.Lock()

    # -- single changes ------------------------------------------------------------------------

    def new_hostname(self, organisation: str, level: int | None = None, label: str = "new") -> Change:
        """A hostname the organisation did not have, at `level` (else 1 or 2)."""
        with self._lock:
            self._serial += 1
            serial = self._serial
            chosen = level if level is not None else self._rng.choice((1, 2))
        primary_key = f"Hostname|internet|{label}{serial}.{organisation}.example"
        self.octopoes.add_object(organisation, primary_key, chosen)
        return self._made(Change(NEW_OBJECT, organisation, primary_key, chosen))

    def raise_level(self, organisation: str) -> Change | None:
        """One object a level or two higher (an object without a profile gets level 1 or 2)."""
        candidates = [o for o in self.octopoes.objects_of(organisation)
                      if (level_of(o) or 0) < HIGHEST_LEVEL]
        ooi = self._pick(candidates)
        if ooi is None:
            return None
        level = min(HIGHEST_LEVEL, (level_of(ooi) or 0) + self._randint(1, 2))
        self.octopoes.set_scan_level(organisation, ooi["primary_key"], level)
        return self._made(Change(LEVEL_RAISED, organisation, ooi["primary_key"], level))

    def lower_level(self, organisation: str) -> Change | None:
        """One object at a lower level, perhaps 0; never a spared one."""
        candidates = [o for o in self._unspared(organisation) if (level_of(o) or 0) >= 1]
        ooi = self._pick(candidates)
        if ooi is None:
            return None
        level = self._randint(0, (level_of(ooi) or 1) - 1)
        self.octopoes.set_scan_level(organisation, ooi["primary_key"], level)
        return self._made(Change(LEVEL_LOWERED, organisation, ooi["primary_key"], level))

    def delete(self, organisation: str) -> Change | None:
        """One object gone; never a spared one."""
        ooi = self._pick(self._unspared(organisation))
        if ooi is None:
            return None
        self.octopoes.delete_object(organisation, ooi["primary_key"])
        return self._made(Change(DELETED, organisation, ooi["primary_key"], None))

    # -- streams -------------------------------------------------------------------------------

    def steady(self, organisation: str, number: int) -> Change | None:
        """The `number`th change of a steady stream (STEADY_RHYTHM); None when there was nothing to change."""
        what = STEADY_RHYTHM[number % len(STEADY_RHYTHM)]
        makers: dict[str, Callable[[str], Change | None]] = {
            NEW_OBJECT: self.new_hostname, LEVEL_RAISED: self.raise_level,
            LEVEL_LOWERED: self.lower_level, DELETED: self.delete}
        return makers[what](organisation)

    def flood(self, organisation: str, count: int, level: int = 1) -> list[Change]:
        """`count` new hostnames at once, as when an organisation adds a large network."""
        return [self.new_hostname(organisation, level, label="flood") for _ in range(count)]

    # -- what was made -------------------------------------------------------------------------

    def spare(self, organisation: str, primary_key: str) -> None:
        """Never lower or delete this object: a demo is following a task on it."""
        with self._lock:
            self._spared.add((organisation, primary_key))

    def counts(self) -> Counter[str]:
        """Changes made so far, by what they were."""
        with self._lock:
            return Counter(change.what for change in self.made)

    def created(self) -> set[tuple[str, str]]:
        """(organisation, primary key) of every object these changes created."""
        with self._lock:
            return {(c.organisation, c.primary_key) for c in self.made if c.what == NEW_OBJECT}

    def _made(self, change: Change) -> Change:
        with self._lock:
            self.made.append(change)
        return change

    def _unspared(self, organisation: str) -> list[JSON]:
        with self._lock:
            spared = {key for org, key in self._spared if org == organisation}
        return [o for o in self.octopoes.objects_of(organisation) if o["primary_key"] not in spared]

    def _pick(self, candidates: list[JSON]) -> JSON | None:
        with self._lock:
            return self._rng.choice(candidates) if candidates else None

    def _randint(self, low: int, high: int) -> int:
        with self._lock:
            return self._rng.randint(low, high)
