"""The operator's Celery config module: `celeryconfig.py` in the working directory, or the module named
by CELERY_CONFIG_MODULE.

`celery -A kat_scheduler ...` (the console script) puts the working directory on `sys.path` only while it
imports the package, and our apps are built later, on first use: a plain import would never see the file.
Celery's own loader imports its config module the same way as here, from the working directory.
"""

from __future__ import annotations

import os
from typing import Any

from celery.utils.imports import import_from_cwd

CONFIG_MODULE_ENV = "CELERY_CONFIG_MODULE"
DEFAULT_CONFIG_MODULE = "celeryconfig"


def operator_overrides() -> dict[str, Any]:
    """Every lower-case name of the config module, or nothing when there is no such module."""
    module_name = os.environ.get(CONFIG_MODULE_ENV, DEFAULT_CONFIG_MODULE)
    try:
        module = import_from_cwd(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        return {}
    return {name: value for name, value in vars(module).items() if name.islower() and not name.startswith("_")}
