"""The `kat-scheduler` command: argument parsing only; each command lives in kat_scheduler/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from kat_scheduler.commands import EXIT_CODES_HELP, CommandError, ExitCode
from kat_scheduler.config import Settings, SettingsError, load_settings
from kat_scheduler.kinds import KINDS
from kat_scheduler.models import TaskStatus
from kat_scheduler.version import __version__

# command (and sub-command) -> "module:function" under kat_scheduler.commands, imported when used.
HANDLERS = {
    "status": "status:run",
    "queue show": "queue_show:run",
    "push": "push:run",
    "cancel": "tasks:cancel_command",
    "tasks": "tasks:list_command",
    "tasks show": "tasks:show_command",
    "schedules": "schedules:run",
    "dead-letters": "dead_letters:run",
    "limits": "limits:run",
}


def _command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str,
             description: str | None = None) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=description or help, epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def _json_flag(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    """--json; on a sub-command of a command that has it too, without a default of its own, so that
    `tasks --json show ID` and `tasks show ID --json` both work."""
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if nested else False,
                        help="print one JSON document instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kat-scheduler", description="OpenKAT's task scheduler",
                                     epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kat-scheduler {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the whole scheduler against a simulated KAT world and show it")
    demo.add_argument("--seconds", type=float, default=30.0, help="how long to run (default 30)")
    demo.add_argument("--forever", action="store_true", help="keep running until interrupted (Ctrl-C)")
    demo.add_argument("--embedded", action="store_true",
                      help="use the embedded Redis and event bus even when Redis and RabbitMQ answer")
    demo.add_argument("--port", type=int, default=8004,
                      help="the port of the demo's API and dashboard (default 8004; a free one when taken)")
    api = commands.add_parser("api", help="serve the HTTP API (docs/api.md) on SCHEDULER_API_HOST:PORT")
    api.add_argument("--host", default=None, help="override SCHEDULER_API_HOST")
    api.add_argument("--port", type=int, default=None, help="override SCHEDULER_API_PORT")

    status = _command(commands, "status", "the beat leader, dispatch slots, queue depths, dead letters, due "
                      "schedules")
    _json_flag(status)

    queue = _command(commands, "queue", "look at a queue")
    queue_actions = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = _command(queue_actions, "show", "the head of a queue with scores, per organisation in serving order")
    show.add_argument("kind", choices=KINDS)
    show.add_argument("--org", help="only this organisation's queue")
    show.add_argument("--limit", type=int, default=10, help="tasks per organisation (default 10)")
    show.add_argument("--orgs", type=int, default=20, help="organisations to show (default 20)")
    _json_flag(show)

    push = _command(commands, "push", "queue a manual run: first in line, grace period skipped")
    _json_flag(push)
    kinds = push.add_subparsers(dest="kind", required=True)
    boefje = kinds.add_parser("boefje", help="run a boefje on an object")
    boefje.add_argument("--org", required=True, help="organisation id")
    boefje.add_argument("--boefje", required=True, help="boefje (plugin) id")
    boefje.add_argument("--ooi", required=True, help="the object's primary key, e.g. Hostname|internet|example.com")
    normalizer = kinds.add_parser("normalizer", help="run a normalizer on a raw file")
    normalizer.add_argument("--org", required=True, help="organisation id")
    normalizer.add_argument("--normalizer", required=True, help="normalizer (plugin) id")
    normalizer.add_argument("--raw-file", required=True, help="the raw file's id in Bytes")
    for leaf in (boefje, normalizer):
        _json_flag(leaf, nested=True)

    cancel = _command(commands, "cancel", "cancel queued tasks (dispatched or running ones are refused)")
    cancel.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    _json_flag(cancel)

    tasks = _command(commands, "tasks", "list task records, newest first; `tasks show ID` for one")
    tasks.add_argument("--kind", choices=KINDS)
    tasks.add_argument("--org", help="organisation id")
    tasks.add_argument("--status", choices=[status.value for status in TaskStatus])
    tasks.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _json_flag(tasks)
    task_actions = tasks.add_subparsers(dest="action", required=False, metavar="show ID")
    task_show = _command(task_actions, "show", "one task record")
    task_show.add_argument("task_id", metavar="ID")
    _json_flag(task_show, nested=True)

    schedules = _command(commands, "schedules", "list schedules, newest first (--due: due ones, earliest first)")
    schedules.add_argument("--kind", choices=KINDS)
    schedules.add_argument("--org", help="organisation id")
    schedules.add_argument("--due", action="store_true", help="only enabled schedules whose deadline has passed")
    schedules.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _json_flag(schedules)

    dead = _command(commands, "dead-letters", "list, requeue or drop dead-lettered tasks and events",
                    "dead-letters [KIND|events] list | requeue ID|all | drop ID|all  (list is the default)")
    dead.add_argument("words", nargs="*", metavar="[KIND|events] list|requeue ID|drop ID")
    dead.add_argument("--limit", type=int, default=100, help="list at most this many per kind (default 100)")
    dead.add_argument("--queue", action="append", metavar="NAME",
                      help="an event queue whose <NAME>.dead to read (default: scan_profile_mutations and "
                           "raw_file_received; repeat for more)")
    _json_flag(dead)

    limits = _command(commands, "limits", "list, set or delete plugin limits (over every organisation)",
                      "limits [list] | set PLUGIN [--concurrency N] [--rate N/s|m|h|d] | delete PLUGIN")
    limits.add_argument("words", nargs="*", metavar="list|set PLUGIN|delete PLUGIN")
    limits.add_argument("--concurrency", type=int, help="at most this many of its tasks in flight at once")
    limits.add_argument("--rate", help="at most N claims per second, minute, hour or day: N/s, N/m, N/h, N/d")
    _json_flag(limits)
    return parser


def _handler_name(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if action else args.command


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "demo":
        from kat_scheduler.demo import DemoOptions, run_demo

        figures = run_demo(DemoOptions(seconds=args.seconds, forever=args.forever, embedded=args.embedded,
                                       port=args.port))
        return 0 if figures["boefje_completed"] and figures["normalizer_completed"] else 1
    if args.command == "api":
        from kat_scheduler.server.serve import serve

        return serve(args.host, args.port)
    module_name, _, function = HANDLERS[_handler_name(args)].partition(":")
    handler = getattr(importlib.import_module(f"kat_scheduler.commands.{module_name}"), function)
    return int(handler(args, settings))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"kat-scheduler: {error}", file=sys.stderr)
        return ExitCode.USAGE
    from kat_scheduler.logging_setup import configure_logging

    configure_logging(settings)
    from kat_scheduler.connectors.services import ServiceUnavailable

    try:
        return run(args, settings)
    except CommandError as error:
        print(f"kat-scheduler: {error}", file=sys.stderr)
        return error.code
    except SettingsError as error:
        print(f"kat-scheduler: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except ServiceUnavailable as error:
        print(f"kat-scheduler: {error} — is the service's address (KATALOGUS_API, OCTOPOES_API, BYTES_API) right?",
              file=sys.stderr)
        return ExitCode.UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
