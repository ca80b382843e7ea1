"""`kat-scheduler api`: serve the API with uvicorn on SCHEDULER_API_HOST:SCHEDULER_API_PORT."""

from __future__ import annotations

import gc
import sys
from typing import Any

import uvicorn

from kat_scheduler.config import Settings, load_settings
from kat_scheduler.context.context import AppContext
from kat_scheduler.logging_setup import LinesInBatches, configure_logging
from kat_scheduler.server.app import create_app


def serve(host: str | None = None, port: int | None = None) -> int:
    settings = load_settings()
    configure_logging(settings, stream=LinesInBatches(sys.stderr))
    context = AppContext.create(settings)
    try:
        app = create_app(context)
        freeze_what_start_up_made()
        run_app(app, settings, host, port)
    finally:
        context.close()
    return 0


def freeze_what_start_up_made() -> None:
    """What start-up made (modules, models, the app) lives as long as the process: gc.freeze() takes it out
    of the collector's sight, so that a full collection, which walked all of it (about 8 ms here, in the
    middle of some request), walks only what was made since."""
    gc.collect()
    gc.freeze()


def run_app(app: Any, settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """uvicorn as `kat-scheduler api` runs it: httptools and uvloop (uvicorn picks them when installed),
    one line per request only when SCHEDULER_API_ACCESS_LOG asks for it (the API logs every task it
    changes on its own). uvicorn's own lines (its access log included) go through our handler
    (log_config=None), so the API writes one format, to stderr, like every other process."""
    uvicorn.run(app, host=host or settings.api_host, port=settings.api_port if port is None else port,
                log_level="debug" if settings.debug else "info", proxy_headers=True,
                access_log=settings.api_access_log, log_config=None)
