"""The script of the show: what happens in the simulated world and when, scaled to the run's length.

    from the start  Octopoes changes the world a few times a second, to the end: new objects, levels
                    raised and lowered, now and then a delete
    20 %            each organisation's report schedule falls due (set up at the start, run by the beat)
    25 %            one organisation floods: hundreds of new hostnames at once; from then on another
                    sends a trickle, a new hostname every second
    35 %            a person asks for a manual run, as `kat-scheduler push` does
    45 %            a pull runner pops a task over the API and starts it; a second later it is killed, and
                    its task's lease runs out a few seconds after (early enough to see it run again)

Only the world's changes, the person's request and the pull runner are scripted. What the scheduler
made of them is read from Redis afterwards (story.py), never assumed here.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kat_scheduler.context import AppContext
from kat_scheduler.demo.journal import Journal
from kat_scheduler.demo.runners import DoomedPullRunner, Popped
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.schedulers import BoefjeScheduler
from kat_scheduler.simulation import WorldChanges
from kat_scheduler.simulation.changes import level_of

logger = logging.getLogger(__name__)

KILLED_AFTER = 1.0  # seconds the pull runner works on its task before it is killed
TRICKLE_EVERY = 1.0  # seconds between the trickle's new hostnames
# The boefjes a manual run is asked for, most telling first; any other enabled one will do.
MANUAL_BOEFJES = ("nmap", "dns-records", "ssl-certificates", "shodan")
ALL_QUEUED = 1_000_000  # more than a demo queue ever holds


@dataclass(frozen=True, slots=True)
class Timeline:
    """When each scene starts, in seconds from the start of the run."""

    reports_due: float
    flood: float
    manual: float
    pull: float
    kill: float

    @classmethod
    def scaled(cls, seconds: float) -> Timeline:
        return cls(reports_due=0.2 * seconds, flood=0.25 * seconds, manual=0.35 * seconds,
                   pull=0.45 * seconds, kill=0.45 * seconds + KILLED_AFTER)


def grace_period_for(seconds: float) -> int:
    """A grace period short enough that work comes round again within the run."""
    return max(3, round(0.3 * seconds))


@dataclass(frozen=True, slots=True)
class Cast:
    """Who plays which part: the organisation that floods, the one that trickles, the one whose manual
    run jumps the queue."""

    flood: str
    trickle: str
    manual: str

    @classmethod
    def of(cls, organisations: list[str]) -> Cast:
        if len(organisations) < 2:
            raise ValueError("the demo needs at least two organisations: one floods while another trickles")
        return cls(flood=organisations[-1], trickle=organisations[-2], manual=organisations[0])


@dataclass(frozen=True, slots=True)
class ManualRun:
    task_id: str
    plugin_id: str
    ooi: str
    organisation: str
    pushed_ms: int
    waiting: frozenset[str]  # the boefje tasks queued when it was pushed

    def describe(self) -> str:
        return f"{self.plugin_id} on {self.ooi} for {self.organisation}"


@dataclass
class Played:
    """What the script has done so far, for the narrator to look up the outcomes of."""

    flood_ms: int | None = None
    flood_size: int = 0
    manual: ManualRun | None = None
    popped: Popped | None = None
    killed_ms: int | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def short(task_id: str) -> str:
    return task_id[:8]


Act = Callable[[], float | None]  # a scene; answers the seconds until it plays again, or None


class Script:
    """Plays the scenes on a thread of its own, on the timeline."""

    def __init__(self, context: AppContext, changes: WorldChanges, journal: Journal, pull_runner: DoomedPullRunner,
                 timeline: Timeline, cast: Cast, changes_per_second: float, flood_size: int) -> None:
        self.context = context
        self.changes = changes
        self.journal = journal
        self.pull_runner = pull_runner
        self.timeline = timeline
        self.cast = cast
        self.changes_per_second = changes_per_second
        self.flood_size = flood_size
        self.played = Played()
        self.organisations = sorted(changes.octopoes.world.organisations)
        self._steady = itertools.count()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, name="demo-script", daemon=True)]

    def start(self) -> None:
        self.journal.add(f"Octopoes starts changing the world, {self.changes_per_second:g} times a second until "
                         "the end: new objects, scan levels raised and lowered, now and then a delete")
        self._threads[0].start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(30)

    # -- the timeline --------------------------------------------------------------------------

    def _agenda(self) -> Iterator[tuple[float, Act]]:
        t = self.timeline
        yield 0.0, self._steady_change
        yield t.flood, self._flood
        yield t.flood + TRICKLE_EVERY, self._trickle
        yield t.manual, self._manual_run
        yield t.pull, self._pull
        yield t.kill, self._kill

    def _run(self) -> None:
        order = itertools.count()
        agenda = [(at, next(order), act) for at, act in self._agenda()]
        heapq.heapify(agenda)
        while agenda:
            at, _, act = heapq.heappop(agenda)
            if self._stopping.wait(max(0.0, at - self.journal.elapsed())):
                return
            try:
                again = act()
            except Exception:  # a scene that fails leaves the others to play
                logger.exception("demo script: %s failed", act.__name__)
                again = None
            if again is not None:
                heapq.heappush(agenda, (at + again, next(order), act))

    # -- the scenes ----------------------------------------------------------------------------

    def _steady_change(self) -> float:
        """One change of the steady stream, the organisations in turn."""
        number = next(self._steady)
        organisation = self.organisations[number % len(self.organisations)]
        self.changes.steady(organisation, number // len(self.organisations))
        return 1.0 / self.changes_per_second

    def _flood(self) -> None:
        self.played.flood_ms, self.played.flood_size = now_ms(), self.flood_size
        self.journal.add(f"{self.cast.flood} floods: {self.flood_size} new hostnames at once (Octopoes publishes a "
                         "scan profile mutation for each)")
        # On a thread of its own: with the in-process bus each mutation is handled as it is published.
        flood = threading.Thread(target=self.changes.flood, args=(self.cast.flood, self.flood_size),
                                 name="demo-flood", daemon=True)
        self._threads.append(flood)
        flood.start()
        self.journal.add(f"{self.cast.trickle} sends a trickle from now on: a new hostname every second")

    def _trickle(self) -> float:
        self.changes.new_hostname(self.cast.trickle, level=1, label="trickle")
        return TRICKLE_EVERY

    def _manual_run(self) -> None:
        """A person asks for a run, the way `kat-scheduler push` and the API's push do."""
        queue = self.context.queues["boefje"]
        scheduler = BoefjeScheduler(self.context)
        for plugin_id, primary_key in self._manual_candidates():
            self.changes.spare(self.cast.manual, primary_key)
            try:
                result = scheduler.push_manual(self.cast.manual, plugin_id, primary_key)
            except (LookupError, PermissionError) as error:
                logger.info("demo: no manual run of %s on %s: %s", plugin_id, primary_key, error)
                continue
            if result.accepted:
                waiting = frozenset(self._queued_ids(queue)) - {result.task_id}
                self.played.manual = ManualRun(result.task_id, plugin_id, primary_key, self.cast.manual, now_ms(),
                                               waiting)
                self.journal.add(f"a person asks for a manual run of {self.played.manual.describe()} (as "
                                 f"`kat-scheduler push` does); {len(waiting)} boefje tasks are waiting")
                return
        self.journal.add(f"no manual run could be pushed for {self.cast.manual}: all its work is queued or running")

    def _manual_candidates(self) -> Iterator[tuple[str, str]]:
        """(boefje, object) pairs of the manual organisation that the boefje may scan, the most telling first."""
        world = self.changes.octopoes.world
        enabled = [plugin_id for plugin_id, on in world.enabled.get(self.cast.manual, {}).items()
                   if on and world.plugins[plugin_id]["type"] == "boefje"]
        enabled.sort(key=lambda p: MANUAL_BOEFJES.index(p) if p in MANUAL_BOEFJES else len(MANUAL_BOEFJES))
        objects = self.changes.octopoes.objects_of(self.cast.manual)
        for plugin_id in enabled:
            plugin = world.plugins[plugin_id]
            for ooi in objects:
                level = level_of(ooi)
                if ooi["object_type"] in plugin["consumes"] and level is not None and level >= plugin["scan_level"]:
                    yield plugin_id, ooi["primary_key"]

    @staticmethod
    def _queued_ids(queue: PriorityQueue) -> list[str]:
        """Every queued task's id, all organisations."""
        return [task_id for organisation in queue.counts()
                for task_id in queue.queued_ids(organisation, 0, ALL_QUEUED)]

    def _pull(self) -> None:
        popped = self.pull_runner.pop_and_start()
        if popped is None:
            self.journal.add(f"pull runner '{self.pull_runner.name}' asks for a task, but the boefje queue is empty")
            return
        self.changes.spare(popped.organisation, popped.ooi)
        self.played.popped = popped
        self.journal.add(f"pull runner '{self.pull_runner.name}' pops a task over the API (POST "
                         f"/schedulers/boefje/pop) and starts it: {popped.plugin_id} on {popped.ooi} for "
                         f"{popped.organisation} (task {short(popped.task_id)})")

    def _kill(self) -> None:
        popped = self.played.popped
        if popped is None:
            return
        self.pull_runner.kill()
        self.played.killed_ms = now_ms()
        lease = self.context.settings.pull_lease_seconds
        self.journal.add(f"pull runner '{self.pull_runner.name}' is killed while it runs task {short(popped.task_id)}:"
                         " it will never report back; the scheduler keeps the task for it until its lease runs out, "
                         f"{lease:g} s after the runner said the task started")
