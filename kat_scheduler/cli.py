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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from kat_scheduler.demo import run_tour

            return run_tour()
    except SettingsError as error:
        print(f"kat-scheduler: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
