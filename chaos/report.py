"""The result table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    fault: str
    in_flight: int  # dispatched or running tasks when the fault struck
    expected: int  # work identities the row's window asked for
    lost: int
    duplicated: int
    stuck: int  # dispatched/running and not finished at the row's deadline
    failed: int  # tasks that ended failed (dead letters); allowed, shown
    recovery: float | None  # seconds from the end of the fault; None: did not recover in time
    bound: float
    bound_why: str
    note: str = ""

    @property
    def passed(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.stuck == 0 and self.recovery is not None
                and self.recovery <= self.bound)

    def why_failed(self) -> str:
        reasons = []
        if self.lost:
            reasons.append(f"{self.lost} lost")
        if self.duplicated:
            reasons.append(f"{self.duplicated} duplicated")
        if self.stuck:
            reasons.append(f"{self.stuck} stuck")
        if self.recovery is None:
            reasons.append("did not recover")
        elif self.recovery > self.bound:
            reasons.append(f"recovery {self.recovery:.1f} s > {self.bound:g} s")
        return ", ".join(reasons)


HEADERS = ("fault", "in flight", "work", "lost", "dup", "stuck", "failed", "recovery s", "bound s", "result")


def render(rows: list[Row]) -> str:
    cells = [HEADERS] + [
        (row.fault, str(row.in_flight), str(row.expected), str(row.lost), str(row.duplicated), str(row.stuck),
         str(row.failed), "—" if row.recovery is None else f"{row.recovery:.1f}", f"{row.bound:g}",
         "PASS" if row.passed else "FAIL")
        for row in rows
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(HEADERS))]
    lines = []
    for number, line in enumerate(cells):
        lines.append("| " + " | ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                                        for column, (cell, width) in enumerate(zip(line, widths, strict=True)))
                     + " |")
        if number == 0:
            lines.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    notes = [f"- {row.fault}: bound = {row.bound_why}" + (f"; {row.note}" if row.note else "")
             + ("" if row.passed else f"; FAIL: {row.why_failed()}") for row in rows]
    return "\n".join(lines) + "\n\n" + "\n".join(notes)
