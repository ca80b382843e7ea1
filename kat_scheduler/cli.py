"""The `kat-scheduler` command."""

from __future__ import annotations

import argparse
import sys

from kat_scheduler.config import SettingsError
from kat_scheduler.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kat-scheduler", description="OpenKAT's task scheduler")
    parser.add_argument("--version", action="version", version=f"kat-scheduler {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="show the scheduler at work on its embedded defaults")
    api = commands.add_parser("api", help="serve the HTTP API (docs/api.md) on SCHEDULER_API_HOST:PORT")
    api.add_argument("--host", default=None, help="override SCHEDULER_API_HOST")
    api.add_argument("--port", type=int, default=None, help="override SCHEDULER_API_PORT")

    push = commands.add_parser("push", help="queue a manual run: first in line, grace period skipped")
    kinds = push.add_subparsers(dest="kind", required=True)
    boefje = kinds.add_parser("boefje", help="run a boefje on an object")
    boefje.add_argument("--org", required=True, help="organisation id")
    boefje.add_argument("--boefje", required=True, help="boefje (plugin) id")
    boefje.add_argument("--ooi", required=True, help="the object's primary key, e.g. Hostname|internet|example.com")
    normalizer = kinds.add_parser("normalizer", help="run a normalizer on a raw file")
    normalizer.add_argument("--org", required=True, help="organisation id")
    normalizer.add_argument("--normalizer", required=True, help="normalizer (plugin) id")
    normalizer.add_argument("--raw-file", required=True, help="the raw file's id in Bytes")
    return parser


def push_manual(args: argparse.Namespace) -> int:
    """`kat-scheduler push`: exit 0 queued, 3 refused (already queued or running, queue full), 4 not found."""
    from kat_scheduler.context import AppContext
    from kat_scheduler.schedulers import BoefjeScheduler, NormalizerScheduler

    context = AppContext.create()
    try:
        if args.kind == "boefje":
            result = BoefjeScheduler(context).push_manual(args.org, args.boefje, args.ooi)
        else:
            result = NormalizerScheduler(context).push_manual(args.org, args.normalizer, args.raw_file)
    except (LookupError, PermissionError) as error:
        print(f"kat-scheduler: {error}", file=sys.stderr)
        return 4
    finally:
        context.close()
    if not result.accepted:
        print(f"kat-scheduler: not queued ({result.outcome}): task {result.task_id} holds this work"
              + (f" ({result.holder_status})" if result.holder_status else ""), file=sys.stderr)
        return 3
    print(result.task_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from kat_scheduler.demo import run_tour

            return run_tour()
        if args.command == "push":
            return push_manual(args)
        if args.command == "api":
            from kat_scheduler.server.serve import serve

            return serve(args.host, args.port)
    except SettingsError as error:
        print(f"kat-scheduler: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
