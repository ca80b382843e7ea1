"""The dashboard's charts: a line over the last hour as inline SVG, drawn here so that the page needs
no charting library and no build step."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 360, 90, 4
HOUR_MS = 3_600_000


def line_chart(title: str, points: Sequence[tuple[int, float]], now_ms: int, figure: str) -> str:
    """`points`: (ms, value), oldest first; x runs over the hour before `now_ms`. The largest value is
    written on the chart, so that its scale is readable without axes."""
    top = max((value for _, value in points), default=0.0)
    scale = (HEIGHT - 2 * PAD) / top if top > 0 else 0.0

    def xy(at_ms: int, value: float) -> str:
        x = PAD + (WIDTH - 2 * PAD) * max(0.0, 1.0 - (now_ms - at_ms) / HOUR_MS)
        return f"{x:.1f},{HEIGHT - PAD - value * scale:.1f}"

    line = " ".join(xy(at, value) for at, value in points)
    empty = "" if points else f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="none">no samples yet</text>'
    return (f'<figure class="chart" data-chart="{escape(figure)}"><figcaption>{escape(title)}: '
            f'<b>{_number(points[-1][1]) if points else "-"}</b> now, at most {_number(top)} in the last hour'
            f'</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(title)}"><rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" class="frame"/>'
            f'<polyline points="{line}" class="line"/>{empty}</svg></figure>')


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
