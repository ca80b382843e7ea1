"""`kat-scheduler limits`: the plugin limits, and what each holds back now; set and delete them.

    kat-scheduler limits                                   # list
    kat-scheduler limits set shodan --concurrency 1 --rate 1/s
    kat-scheduler limits delete shodan

A change holds from the next claim or pop on, in every dispatcher and API replica, and wins over
SCHEDULER_PLUGIN_LIMITS (kat_scheduler/plugin_limits.py)."""

from __future__ import annotations

import argparse

from kat_scheduler import plugin_limits
from kat_scheduler.commands.common import CommandError, ExitCode, emit_json, session, table
from kat_scheduler.config import Settings
from kat_scheduler.models.inputs import check_plugin_id
from kat_scheduler.queues.limits import BadLimit, PluginLimit


def run(args: argparse.Namespace, settings: Settings) -> int:
    words: list[str] = args.words
    action = words[0] if words else "list"
    with session(settings) as context:
        if action == "list" and len(words) <= 1:
            reports = plugin_limits.reports(context)
            if args.json:
                emit_json({"results": [{"plugin_id": r.plugin_id, "concurrency": r.limit.concurrency,
                                        "rate": r.limit.rate, "in_flight": r.in_flight, "queued": r.queued,
                                        "held": r.held} for r in reports]})
            elif reports:
                print(table(["plugin", "concurrency", "rate", "in flight", "queued", "held by limit"],
                            [(r.plugin_id, r.limit.concurrency or "-", r.limit.rate or "-", r.in_flight, r.queued,
                              r.held) for r in reports]))
            else:
                print("no plugin limits")
            return ExitCode.OK
        if action in ("set", "delete") and len(words) == 2:
            plugin_id = _checked(words[1])
            if action == "delete":
                if not plugin_limits.delete_limit(context, plugin_id):
                    raise CommandError(ExitCode.NOT_FOUND, f"plugin {plugin_id} has no limit")
                print(f"plugin {plugin_id}: no longer limited")
                return ExitCode.OK
            try:
                limit = PluginLimit(args.concurrency, args.rate)
            except BadLimit as error:
                raise CommandError(ExitCode.USAGE, f"limits set: {error}") from None
            plugin_limits.set_limit(context, plugin_id, limit)
            print(f"plugin {plugin_id}: {plugin_limits.describe(limit)}")
            return ExitCode.OK
    raise CommandError(ExitCode.USAGE, "limits: list | set PLUGIN [--concurrency N] [--rate N/s|m|h|d] | "
                                       "delete PLUGIN")


def _checked(plugin_id: str) -> str:
    try:
        return check_plugin_id(plugin_id)
    except ValueError as error:
        raise CommandError(ExitCode.USAGE, f"limits: plugin id: {error}") from None
