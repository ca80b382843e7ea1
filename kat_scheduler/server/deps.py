"""What route handlers get from the app: the AppContext and the API's own settings and state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from kat_scheduler.context.context import AppContext
from kat_scheduler.kinds import KINDS
from kat_scheduler.queues import PriorityQueue
from kat_scheduler.repositories.runner_presence import PULL, RunnerPresence
from kat_scheduler.server.config import ApiSettings
from kat_scheduler.server.errors import ApiError
from kat_scheduler.server.externals import ExternalsProbe


@dataclass
class ApiState:
    """Everything the routes share, kept on app.state.api."""

    context: AppContext
    settings: ApiSettings
    last_reap: dict[str, float] = field(default_factory=dict)  # kind -> monotonic time of the last reap
    externals_probe: ExternalsProbe = field(init=False)
    runners: RunnerPresence = field(init=False)
    runner_shown: dict[str, float] = field(default_factory=dict)  # pull runner -> monotonic time last shown

    def __post_init__(self) -> None:
        self.externals_probe = ExternalsProbe(self.context)
        self.runners = RunnerPresence(self.context.redis, self.context.settings.key_prefix, self.context.clock_ms)

    def show_pull_runner(self, name: str) -> None:
        """Note a pull runner for the dashboard: at most one write per runner every SHOW_RUNNER_EVERY seconds,
        so that the pops runners make thousands of times a second do not each write."""
        now = time.monotonic()
        if now - self.runner_shown.get(name, -SHOW_RUNNER_EVERY) < SHOW_RUNNER_EVERY:
            return
        self.runner_shown[name] = now
        self.runners.seen(name, PULL)


SHOW_RUNNER_EVERY = 5.0


def pull_runner_name(host: str | None) -> str:
    """A pull runner as the API sees it: its address (OpenKAT's runners send no name of their own)."""
    return f"pull runner at {host}" if host else "pull runner"


async def get_state(request: Request) -> ApiState:
    """Async so that FastAPI runs it on the event loop, not in a worker thread of its own."""
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]


def queue_of(state: ApiState, scheduler_id: str) -> PriorityQueue:
    """The queue of a scheduler id (a kind of work: "boefje", "normalizer", "report"); 404 for any other."""
    if scheduler_id not in KINDS or scheduler_id not in state.context.queues:
        raise ApiError(404, f"no scheduler {scheduler_id!r}; the schedulers are {', '.join(KINDS)}")
    return state.context.queues[scheduler_id]
