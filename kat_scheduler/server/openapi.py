"""Print the API's OpenAPI document: `python -m kat_scheduler.server.openapi > docs/openapi.json`.

The document does not depend on the deployment: it is built with default settings and no token, and
without talking to Redis (the client connects lazily and nothing here calls it)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from kat_scheduler.config import Settings
from kat_scheduler.context.context import AppContext
from kat_scheduler.server.app import create_app
from kat_scheduler.server.config import ApiSettings


def document() -> dict[str, Any]:
    context = AppContext.create(Settings())
    app_logger = logging.getLogger("kat_scheduler.server.app")
    level = app_logger.level
    app_logger.setLevel(logging.ERROR)  # the "API is open" warning is about serving, not this document
    try:
        return create_app(context, ApiSettings(api_token=None)).openapi()
    finally:
        app_logger.setLevel(level)
        context.close()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
