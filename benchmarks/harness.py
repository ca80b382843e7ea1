"""How a benchmark reports: one line per figure, beside the raw figure measured in the same run.

    <name>: <value> <unit> (ratio <r> of <raw reference>)

The ratio is always ours as a fraction of the raw reference's speed, so 1.0 means "as fast as
raw" whether the figure is a rate (ours / raw) or a cost such as a latency (raw / ours).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LINES: list[str] = []


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    reference: float
    reference_label: str
    lower_is_better: bool = False

    @property
    def ratio(self) -> float:
        if self.lower_is_better:
            return self.reference / self.value if self.value else float("inf")
        return self.value / self.reference if self.reference else float("inf")

    def line(self) -> str:
        return (f"{self.name}: {_fmt(self.value)} {self.unit} "
                f"(ratio {self.ratio:.2f} of {self.reference_label} {_fmt(self.reference)} {self.unit})")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def report(figure: Figure) -> None:
    line = figure.line()
    LINES.append(line)
    print(line, flush=True)


class Stopwatch:
    """Time spent per label, summed over several rounds. A benchmark alternates its own operations with
    the raw reference in rounds, so a slow spell of this shared machine hits both alike."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock  # time.process_time to count this process's CPU instead of wall time
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    @contextmanager
    def timing(self, label: str, count: int) -> Iterator[None]:
        """Time the block, which performs `count` operations."""
        start = self.clock()
        yield
        self.seconds[label] = self.seconds.get(label, 0.0) + self.clock() - start
        self.counts[label] = self.counts.get(label, 0) + count

    def rate(self, label: str) -> float:
        return self.counts[label] / self.seconds[label]


def rate(count: int, work: Callable[[], object]) -> float:
    """Operations per second of `work`, which performs `count` operations."""
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)
