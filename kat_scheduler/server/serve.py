"""`kat-scheduler api`: serve the API with uvicorn on SCHEDULER_API_HOST:SCHEDULER_API_PORT."""

from __future__ import annotations

import uvicorn

from kat_scheduler.config import load_settings
from kat_scheduler.context.context import AppContext
from kat_scheduler.logging_setup import configure_logging
from kat_scheduler.server.app import create_app


def serve(host: str | None = None, port: int | None = None) -> int:
    settings = load_settings()
    configure_logging(settings)
    context = AppContext.create(settings)
    try:
        app = create_app(context)
        uvicorn.run(app, host=host or settings.api_host, port=settings.api_port if port is None else port,
                    log_level="debug" if settings.debug else "info", proxy_headers=True)
    finally:
        context.close()
    return 0
