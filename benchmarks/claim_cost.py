"""What a filtered claim of 1,000 behind 10,000 tasks of other plugins costs Redis (bench_queue's
filtered_pop_many, looked at from inside Redis), in one of two measures:

    python -m benchmarks.claim_cost                 # time per Redis command (INFO commandstats)
    python -m benchmarks.claim_cost --callgrind     # instructions, on a redis-server under valgrind

Instructions are the same count on every run, whatever else the machine does, so they compare versions:
`--lua FILE` runs another queue.lua (`git show <commit>:kat_scheduler/queues/queue.lua > FILE`), and
`--one-by-one` puts a weight of 1 in play, which changes no turn but makes queue.lua take the claim one
task at a time."""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

import kat_scheduler.queues.priority_queue as priority_queue
from benchmarks.bench_queue import REDIS_URL, claims_behind_others
from kat_scheduler.queues import connect

AHEAD, LIMIT = 10_000, 1_000


def claims(client: redis.Redis, rounds: int, one_by_one: bool, around: Callable[[Callable[[], object]], None]) -> None:
    """`rounds` filtered claims of LIMIT behind AHEAD, each made inside `around`."""
    for _, claim in claims_behind_others(client, f"kat-claim-cost-{uuid.uuid4().hex[:8]}", rounds, AHEAD, LIMIT,
                                         one_by_one):
        around(claim)


def command_times(rounds: int, one_by_one: bool) -> None:
    client = connect(REDIS_URL)
    spent: dict[str, list[int]] = {}

    def measured(claim: Callable[[], object]) -> None:
        before = client.info("commandstats")
        claim()
        for name, after in client.info("commandstats").items():
            spent.setdefault(name.removeprefix("cmdstat_"), []).append(
                after["usec"] - before.get(name, {"usec": 0})["usec"])

    claims(client, rounds, one_by_one, measured)
    print(f"Redis time of a filtered claim of {LIMIT:,} behind {AHEAD:,}, median of {rounds} (µs):")
    for name, times in sorted(spent.items(), key=lambda item: -statistics.median(item[1])):
        if statistics.median(times) > 0 and name != "info":
            print(f"  {name:12} {statistics.median(times):>8,.0f}")


def instructions(rounds: int, one_by_one: bool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        server = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                   f"--callgrind-out-file={out}", "redis-server", "--port", str(port),
                                   "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = connect(f"redis://127.0.0.1:{port}/0")
            deadline = time.monotonic() + 60
            while True:  # valgrind takes a few seconds to start the server
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

            def control(*args: str) -> None:
                subprocess.run(["callgrind_control", *args, str(server.pid)], check=True, capture_output=True)

            def counted(claim: Callable[[], object]) -> None:
                control("--instr=on")
                claim()
                control("--instr=off")

            claims(client, rounds, one_by_one, counted)
            control("--dump")
            deadline = time.monotonic() + 60
            while not (dumps := [path for path in Path(folder).glob("callgrind.out.*")
                                 if "\ntotals:" in path.read_text()]):  # a dump's last line, once written
                if time.monotonic() > deadline:
                    raise TimeoutError("callgrind wrote no dump")
                time.sleep(0.2)
            annotated = subprocess.run(["callgrind_annotate", str(dumps[0])], check=True, capture_output=True,
                                       text=True).stdout
        finally:
            server.terminate()
            server.wait(timeout=60)
    total = int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", annotated).group(1).replace(",", ""))  # type: ignore[union-attr]
    print(f"Redis instructions of {rounds} filtered claims of {LIMIT:,} behind {AHEAD:,}"
          f"{' (one by one)' if one_by_one else ''}: {total:,}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.claim_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind")
    parser.add_argument("--one-by-one", action="store_true", help="a weight of 1 in play: the claim one by one")
    parser.add_argument("--lua", type=Path, help="another queue.lua to run")
    parser.add_argument("--rounds", type=int, default=None, help="claims (default: 3 under valgrind, else 10)")
    args = parser.parse_args()
    if args.lua:
        priority_queue.QUEUE_LUA = args.lua
    if args.callgrind:
        instructions(args.rounds or 3, args.one_by_one)
    else:
        command_times(args.rounds or 10, args.one_by_one)


if __name__ == "__main__":
    main()
