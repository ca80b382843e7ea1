"""`python -m chaos [--size small|full] [--only TEXT] [--keep]`: run the fault suite, print the table,
exit 1 on a FAIL."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType

from chaos.config import SIZES
from chaos.report import render
from chaos.suite import run_suite

logger = logging.getLogger("chaos")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--keep", action="store_true", help="keep the run's logs (printed path) instead of deleting")
    parser.add_argument("--only", default="", metavar="TEXT", help="run only the faults whose name holds TEXT")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("celery", "kombu", "amqp", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # the load logs its own failed publishes
    signal.signal(signal.SIGTERM, _interrupt)
    size = SIZES[args.size]
    started = time.monotonic()
    try:
        rows = run_suite(size, keep=args.keep, only=args.only)
    except KeyboardInterrupt:
        logger.error("interrupted; everything started was torn down")
        return 130
    minutes = (time.monotonic() - started) / 60
    print(f"\nkat_scheduler fault suite, size {size.name}, {minutes:.1f} min\n")
    print(render(rows))
    failed = [row for row in rows if not row.passed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows PASS" + (f"; FAIL: {', '.join(r.fault for r in failed)}"
                                                                    if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
