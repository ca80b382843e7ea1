"""The dashboard's HTML, rendered here from data.py's documents: the overview, a task's page and the
token form. Every figure a test or a person may want to pick out carries `data-figure="<name>"`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

from kat_scheduler.durations import duration
from kat_scheduler.server.dashboard.charts import line_chart

HERE = Path(__file__).parent
PAGE = Template((HERE / "page.html").read_text())
SCRIPT = (HERE / "dashboard.js").read_text()


def page(title: str, subtitle: str, body: str, refresh_url: str = "") -> str:
    return PAGE.substitute(title=escape(title), subtitle=escape(subtitle), body=body, refresh=escape(refresh_url),
                           script=SCRIPT)


def overview(data: dict[str, Any]) -> str:
    """The main part of /dashboard (and all of /dashboard/live)."""
    kinds: dict[str, Any] = data["kinds"]
    now_ms = int(datetime.fromisoformat(data["now"]).timestamp() * 1000)
    return "\n".join([
        _queues(kinds, now_ms), _organisations(kinds), _heads(kinds), _limits(kinds),
        _runners_and_beat(data, kinds), _dead_letters(kinds),
        f'<p class="muted">read at {escape(data["now"])} from Redis, key prefix {escape(data["key_prefix"])}</p>',
    ])


def _queues(kinds: dict[str, Any], now_ms: int) -> str:
    rows = []
    for kind, q in kinds.items():
        slots = f'{q["slots_in_use"]} of {q["slots"]}' if q["slots"] else f'{q["slots_in_use"]} (pool sizes)'
        rows.append(_row([kind, _fig(f"{kind}/queued", q["queued"]), _fig(f"{kind}/dispatched", q["dispatched"]),
                          _fig(f"{kind}/running", q["running"]), _fig(f"{kind}/oldest_wait",
                                                                      duration(q["oldest_wait_seconds"])),
                          _fig(f"{kind}/slots", slots), _fig(f"{kind}/due_schedules",
                                                             f'{q["due_schedules"]} of {q["schedules"]}'),
                          _fig(f"{kind}/dead_letters", q["dead_letters"])]))
    charts = []
    for kind, q in kinds.items():
        series = q["series"]
        depth = [(p["at_ms"], float(p["queued"])) for p in series]
        ended = [(p["at_ms"], p["ended_per_minute"]) for p in series if p["ended_per_minute"] is not None]
        charts.append(f'<div><h3>{escape(kind)}</h3><div class="charts">'
                      f'{line_chart("queued", depth, now_ms, f"{kind}/depth")}'
                      f'{line_chart("ended per minute", ended, now_ms, f"{kind}/throughput")}</div></div>')
    table = _table(["kind", "queued", "dispatched", "running", "oldest wait", "runner slots in use", "due schedules",
                    "dead letters"], rows, numeric=range(1, 8))
    return _section("Queues", table + '<div class="charts">' + "".join(charts) + "</div>")


def _organisations(kinds: dict[str, Any]) -> str:
    parts = []
    for kind, q in kinds.items():
        if not q["organisations"]:
            continue
        rows = [_row([o["organisation"], o["turn"] or "-",
                      _fig(f'{kind}/{o["organisation"]}/queued', o["queued"]),
                      _fig(f'{kind}/{o["organisation"]}/dispatched', o["dispatched"]),
                      _fig(f'{kind}/{o["organisation"]}/running', o["running"]),
                      duration(o["oldest_wait_seconds"])]) for o in q["organisations"]]
        note = ("" if q["in_flight_read"] >= q["in_flight"] else
                f'<p class="muted">dispatched and running counted over {q["in_flight_read"]} of {q["in_flight"]} '
                "claimed tasks</p>")
        parts.append(f"<h3>{escape(kind)}</h3>" + _table(["organisation", "turn", "queued", "dispatched", "running",
                                                           "oldest wait"], rows, numeric=range(1, 6)) + note)
    return _section("Per organisation", "".join(parts) or '<p class="muted">nothing queued or in flight</p>')


def _heads(kinds: dict[str, Any]) -> str:
    parts = []
    for kind, q in kinds.items():
        for head in q["head"]:
            rows = [_row([_task_link(t["id"]), t["plugin"], t["ooi"] or "-",
                          _fig(f'{kind}/score/{t["id"]}', t["score"]), _why(t["why"], t["score"], t["held_by_limit"]),
                          duration(t["waiting_seconds"])]) for t in head["tasks"]]
            parts.append(f'<h3>{escape(kind)}: {escape(head["organisation"])}, turn {head["turn"]}</h3>'
                         + _table(["task", "plugin", "input", "score", "why this place", "waiting"], rows,
                                  numeric=[3]))
    intro = ('<p class="muted">Organisations take turns; within one, the lowest score goes first. A score is the '
             "moment a task should be served: its push time, plus a delay its ranker gives; manual runs are far "
             "below zero.</p>")
    return _section("Next in line", intro + ("".join(parts) or '<p class="muted">nothing queued</p>'))


def _why(why: str, score: int, held: bool) -> _Html:
    style = "held" if held else "manual" if score < 0 else ""
    return _Html(f'<span class="{style}">{escape(why)}</span>')


def _limits(kinds: dict[str, Any]) -> str:
    rows = [_row([kind, limit["plugin"], limit["concurrency"] or "-", limit["rate"] or "-", limit["in_flight"],
                  limit["room"], _fig(f'{kind}/held/{limit["plugin"]}', limit["held"])])
            for kind, q in kinds.items() for limit in q["limits"]]
    if not rows:
        return ""
    return _section("Plugin limits", _table(["kind", "plugin", "concurrency", "rate", "in flight", "room now",
                                             "held back"], rows, numeric=range(4, 7)))


def _runners_and_beat(data: dict[str, Any], kinds: dict[str, Any]) -> str:
    beat = data["beat"]
    leader = (f'<p>Beat leader: <b data-figure="beat/leader">{escape(beat["leader"])}</b>, lease '
              f'{duration(beat["lease_seconds_left"])} left</p>' if beat["leader"] else
              '<p data-figure="beat/leader">No beat holds the leader lease: is <code>celery -A kat_scheduler beat'
              "</code> running?</p>")
    rows = [_row([r["name"], "Celery worker" if r["how"] == "celery" else "pulls over the API",
                  f'{duration(r["seen_seconds_ago"])} ago', "-" if r["active"] is None else r["active"],
                  "-" if r["processed"] is None else r["processed"]]) for r in data["runners"]]
    runners = (_table(["runner", "how", "last seen", "running now", "done since start"], rows, numeric=[3, 4])
               if rows else '<p class="muted">no runner seen in the last ten minutes</p>')
    slots = ", ".join(f'{escape(kind)} {q["slots_in_use"]} in use on <code>{escape(q["celery_queue"])}</code>'
                      for kind, q in kinds.items())
    return _section("Runners and the beat", leader + runners + f"<p>Runner slots: {slots}</p>")


def _dead_letters(kinds: dict[str, Any]) -> str:
    rows = []
    for kind, q in kinds.items():
        for d in q["dead"]:
            buttons = _Html("".join(f'<button data-action="{action}" data-kind="{escape(kind)}" '
                                    f'data-task="{escape(d["id"])}">{action}</button>'
                                    for action in ("requeue", "drop")))
            rows.append(_row([kind, d["organisation"], d["plugin"], d["ooi"] or "-", d["reason"] or "-",
                              duration(d["dead_seconds"]), _task_link(d["id"]), buttons]))
    body = (_table(["kind", "organisation", "plugin", "input", "reason", "dead for", "task", ""], rows)
            if rows else '<p class="muted">no dead letters</p>')
    return _section("Dead letters", body)


def task_body(document: dict[str, Any]) -> str:
    task = document["task"]
    fields = [("id", task["id"]), ("kind", task["scheduler_id"]), ("organisation", task["organisation"]),
              ("status", task["status"]), ("plugin", document["plugin"]), ("input", document["ooi"] or "-"),
              ("priority (score)", task["priority"]), ("attempts (claims)", task["attempts"]),
              ("expired leases", document["expired_leases"]), ("reason", document["reason"] or "-"),
              ("runner", document["runner"] or "-"), ("schedule", task["schedule_id"] or "-"),
              ("created", task["created_at"]), ("modified", task["modified_at"])]
    record = _table(["field", "value"], [_row([name, _fig(f"task/{name.split(' ')[0]}", value)])
                                         for name, value in fields])
    history = _table(["when", "status", "why or by whom"],
                     [_row([change["at"], _fig("task/history/status", change["status"]), change["note"] or ""])
                      for change in document["history"]])
    data = escape(json.dumps(task["data"], indent=2, sort_keys=True))
    return (_section(f'Task {escape(task["id"])}', record) + _section("History of statuses", history)
            + _section("Data", f"<pre>{data}</pre>"))


def error_body(text: str) -> str:
    return _section("Not found", f"<p>{escape(text)}</p>")


def sign_in_page() -> bytes:
    """What a dashboard page answers without the token, when the API has one."""
    return page("sign in", "kat_scheduler dashboard", login_body()).encode()


def login_body(problem: str | None = None) -> str:
    error = f'<p class="error">{escape(problem)}</p>' if problem else ""
    return _section("Sign in", error + '<p>This scheduler\'s API needs its token (SCHEDULER_API_TOKEN).</p>'
                    '<form method="post" action="/dashboard/login"><label>Token <input type="password" '
                    'name="token" autocomplete="current-password" autofocus></label> <button type="submit">'
                    "Open the dashboard</button></form>")


# -- small pieces ---------------------------------------------------------------------------------

def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _table(headers: Sequence[str], rows: Iterable[str], numeric: Iterable[int] = ()) -> str:
    numbered = set(numeric)
    head = "".join(f'<th{" class=n" if n in numbered else ""}>{escape(h)}</th>' for n, h in enumerate(headers))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class _Html(str):
    """Text that is HTML already: _row does not escape it."""


def _row(cells: Sequence[Any]) -> str:
    return "<tr>" + "".join(f"<td>{value if isinstance(value, _Html) else escape(str(value))}</td>"
                            for value in cells) + "</tr>"


def _fig(name: str, value: Any) -> _Html:
    return _Html(f'<span data-figure="{escape(name)}">{escape(str(value))}</span>')


def _task_link(task_id: str) -> _Html:
    return _Html(f'<a href="/dashboard/tasks/{quote(task_id)}">{escape(task_id[:8])}…</a>')

