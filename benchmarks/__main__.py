"""`make bench`: run every benchmarks/bench_*.py module's run(), or those named with --only.

With several modules, each runs in a process of its own, so that one module's leftovers (threads of
a Celery worker, an API server, big heaps for the garbage collector) do not slow the next one's
measurements."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--only", nargs="*", default=None, help="module names without bench_, e.g. queue")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    if len(names) > 1:
        quick = ["--quick"] if args.quick else []
        return max(subprocess.run([sys.executable, "-m", "benchmarks", "--only", name.removeprefix("bench_"), *quick],
                                  check=False).returncode for name in names)
    failed = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"# {name}", flush=True)
        try:
            module.run(quick=args.quick)
        except Exception as error:  # one broken benchmark should not hide the others' figures
            failed += 1
            print(f"{name}: failed: {error!r}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
