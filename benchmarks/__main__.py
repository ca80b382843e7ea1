"""`make bench`: run every benchmarks/bench_*.py module's run(), or those named with --only."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
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
