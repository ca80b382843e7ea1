"""The operator's commands behind `kat-scheduler` (kat_scheduler/cli.py parses the arguments).

Each module is one command: it reads the settings, opens Redis through `common.session`, prints text or
(--json) one JSON document, and returns an ExitCode or raises CommandError.
"""

from kat_scheduler.commands.common import EXIT_CODES_HELP, CommandError, ExitCode

__all__ = ["EXIT_CODES_HELP", "CommandError", "ExitCode"]
