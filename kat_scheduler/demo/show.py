"""The staged show: the script (script.py) and its narrator (story.py), started and stopped together.

The script plays its scenes on a thread of its own; the narrator is polled by whoever draws the screen,
so what it writes is what Redis says at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass

from kat_scheduler.context import AppContext
from kat_scheduler.demo.journal import Journal
from kat_scheduler.demo.runners import DoomedPullRunner, ServingLog
from kat_scheduler.demo.script import Cast, Script, Timeline, now_ms
from kat_scheduler.demo.story import Findings, Narrator, find
from kat_scheduler.simulation import SimulatedKAT, WorldChanges

CHANGES_PER_SECOND = 3.0  # the steady stream of Octopoes' changes
FLOOD_SIZE = 200  # new hostnames of the flooding organisation, all at once


def report_every(seconds: float) -> float:
    """How often the narrator sums up the changes and the turns: five times a run, the first well before the
    flood (at a quarter of the run), the second well after it."""
    return max(3.0, seconds / 5)


@dataclass
class Show:
    """The script, its narrator, and where the narrator reads what the runners were handed."""

    script: Script
    narrator: Narrator
    serving: ServingLog
    context: AppContext

    @classmethod
    def stage(cls, context: AppContext, kat: SimulatedKAT, serving: ServingLog, api_url: str, seconds: float,
              celery_runner: str, seed: int = 0) -> Show:
        """Cast the organisations and set the timeline to the run's length; its clock starts now, so stage
        the show just before start()."""
        journal = Journal(now_ms())
        token = context.settings.api_token
        pull_runner = DoomedPullRunner(api_url, serving, token.get_secret_value() if token else None)
        cast = Cast.of(sorted(kat.world.organisations))
        script = Script(context, WorldChanges(kat.octopoes, seed), journal, pull_runner, Timeline.scaled(seconds),
                        cast, CHANGES_PER_SECOND, FLOOD_SIZE)
        narrator = Narrator(context, serving, journal, script, celery_runner, report_every(seconds))
        return cls(script, narrator, serving, context)

    @property
    def journal(self) -> Journal:
        return self.script.journal

    @property
    def changes(self) -> WorldChanges:
        return self.script.changes

    def start(self) -> None:
        self.script.start()

    def stop(self) -> None:
        """Stop the scenes (safe to call twice); the narrator only reads, so it needs no stopping."""
        self.script.stop()

    def findings(self) -> Findings:
        self.narrator.poll()
        return find(self.context, self.serving, self.narrator)
