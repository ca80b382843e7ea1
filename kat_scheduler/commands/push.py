"""`kat-scheduler push`: a manual run, first in line and without the grace period."""

from __future__ import annotations

import argparse

from kat_scheduler.commands.common import CommandError, ExitCode, emit_json, session
from kat_scheduler.config import Settings
from kat_scheduler.schedulers import BoefjeScheduler, NormalizerScheduler


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 queued, 3 refused (already queued or running, queue full), 4 not found."""
    with session(settings) as context:
        try:
            if args.kind == "boefje":
                result = BoefjeScheduler(context).push_manual(args.org, args.boefje, args.ooi)
            else:
                result = NormalizerScheduler(context).push_manual(args.org, args.normalizer, args.raw_file)
        except (LookupError, PermissionError) as error:
            raise CommandError(ExitCode.NOT_FOUND, str(error)) from None
    if args.json:
        emit_json({"task_id": result.task_id, "outcome": result.outcome.value, "holder_status": result.holder_status})
    if not result.accepted:
        raise CommandError(ExitCode.REFUSED, f"not queued ({result.outcome}): task {result.task_id} holds this work"
                           + (f" ({result.holder_status})" if result.holder_status else ""))
    if not args.json:
        print(result.task_id)
    return ExitCode.OK
