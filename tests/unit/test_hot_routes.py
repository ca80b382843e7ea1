"""Push and pop served by the hot routes (server/hot_routes.py) answer as the FastAPI routes they stand in
front of: the same request sent both ways gets the same status, headers and body."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from kat_scheduler import fast_json
from kat_scheduler.context.context import AppContext
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings
from kat_scheduler.server.hot_routes import HotRoute, match
from kat_scheduler.server.responses import json_bytes
from tests.factories.tasks import FakeClock
from tests.unit.test_api import boefje_data, make_context

API_SETTINGS = ApiSettings(api_token="s3cret", reap_interval_seconds=0)
TOKEN = {"Authorization": "Bearer s3cret"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def scope(method: str, path: str, query: bytes = b"") -> Scope:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}


@pytest.mark.parametrize(("method", "path", "query", "route"), [
    ("POST", "/schedulers/boefje/push", b"", HotRoute("boefje", "push")),
    ("POST", "/schedulers/normalizer/pop", b"", HotRoute("normalizer", "pop", 1)),
    ("POST", "/schedulers/boefje/pop", b"limit=50", HotRoute("boefje", "pop", 50)),
    ("GET", "/schedulers/boefje/pop", b"", None),  # another method: FastAPI's 405
    ("POST", "/schedulers/nothing/push", b"", None),  # no such scheduler: FastAPI's 404
    ("POST", "/schedulers/boefje/pop", b"limit=abc", None),  # FastAPI's 400 names the field
    ("POST", "/schedulers/boefje/pop", b"limit=0", None),
    ("POST", "/schedulers/boefje/pop", b"limit=1&limit=2", None),
    ("POST", "/schedulers/boefje/pop", b"limit=1&other=x", None),
    ("POST", "/schedulers/boefje/push/", b"", None),
    ("PATCH", "/tasks/0b1c2d3e-0000-4000-8000-000000000000", b"", HotRoute("0b1c2d3e-0000-4000-8000-000000000000",
                                                                          "patch")),
    ("PATCH", "/tasks/a/b", b"", None),
    ("GET", "/tasks/0b1c2d3e-0000-4000-8000-000000000000", b"", None),  # GET stays FastAPI's
])
def test_the_hot_routes_take_only_what_they_read_as_fastapi_would(method: str, path: str, query: bytes,
                                                                   route: HotRoute | None) -> None:
    assert match(scope(method, path, query)) == route


class FastApiOnly:
    """The app as FastAPI alone serves it, without the hot routes in front."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)


@pytest.fixture
def both_ways(fake_redis: fakeredis.FakeRedis, key_prefix: str,
              clock: FakeClock) -> Iterator[tuple[TestClient, TestClient]]:
    """Two APIs, each on a queue of its own, one with and one without the hot routes."""
    hot_context = make_context(fake_redis, f"{key_prefix}-hot", clock)
    plain_context = make_context(fake_redis, f"{key_prefix}-plain", clock)
    with TestClient(create_app(hot_context, API_SETTINGS)) as hot, \
            TestClient(FastApiOnly(create_app(plain_context, API_SETTINGS))) as plain:  # type: ignore[arg-type]
        yield hot, plain


def comparable(response: Any) -> tuple[int, dict[str, str], Any]:
    """Status, the headers a client reads, and the body without what differs from task to task."""
    headers = {name: response.headers[name] for name in ("content-type", "retry-after", "www-authenticate")
               if name in response.headers}
    body = response.json()
    if isinstance(body, dict) and "detail" in body:
        body["detail"] = UUID.sub("<id>", body["detail"])
    for task in body.get("results", [body]) if isinstance(body, dict) else []:
        for varying in ("id", "hash", "created_at", "modified_at", "priority"):
            task.pop(varying, None)
        if isinstance(task.get("data"), dict):
            task["data"].pop("id", None)
    return response.status_code, headers, body


def requests() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, arguments); "{pushed}" and "{popped}" in a path stand for the id of the task the
    last push made and the last pop took, on each of the two APIs."""
    ooi = "Hostname|internet|same.example"
    manual = {"organisation": "org1", "priority": 1, "data": boefje_data(ooi=ooi)}
    running, completed = {"json": {"status": "running"}}, {"json": {"status": "completed"}}
    return [
        ("POST", "/schedulers/boefje/push", {"json": manual}),  # 201
        ("POST", "/schedulers/boefje/push", {"json": manual}),  # 409 with Retry-After: queued already
        ("PATCH", "/tasks/{pushed}", completed),  # 409: queued, pop it first
        ("POST", "/schedulers/boefje/push", {"json": {**manual, "organisation": "org2"}}),  # 400 organisation
        ("POST", "/schedulers/boefje/push", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("POST", "/schedulers/boefje/push", {"content": json.dumps(manual | {"data": boefje_data()}).encode()}),
        ("POST", "/schedulers/boefje/push", {"content": b""}),  # 400: needs a body
        ("POST", "/schedulers/boefje/pop?limit=5", {"json": {"filters": [
            {"column": "data", "field": "boefje__id", "operator": "==", "value": "nmap"}]}}),
        ("POST", "/schedulers/boefje/pop", {}),  # the manual task
        ("PATCH", "/tasks/{popped}", running),
        ("PATCH", "/tasks/{popped}", running),  # again: renews the hold
        ("PATCH", "/tasks/{popped}", {"content": b'{"status": "sleeping"}'}),  # 400
        ("PATCH", "/tasks/{popped}", completed),
        ("PATCH", "/tasks/{popped}", completed),  # again: a no-op
        ("PATCH", "/tasks/{popped}", running),  # 409: it has ended
        ("PATCH", "/tasks/0b1c2d3e-0000-4000-8000-000000000000", running),  # 404
        ("POST", "/schedulers/boefje/pop?limit=5", {}),  # the other queued task
        ("PATCH", "/tasks/{popped}", {"json": {"status": "queued"}}),  # given back
        ("POST", "/schedulers/boefje/pop", {"json": {"filters": [{"column": "data", "operator": "~", "value": 1}]}}),
        ("POST", "/schedulers/boefje/pop", {"content": b"[1, 2]"}),  # 400: not a filter
    ]


def test_each_request_is_answered_alike_with_and_without_the_hot_routes(
        both_ways: tuple[TestClient, TestClient]) -> None:
    remembered: list[dict[str, str]] = [{}, {}]
    for method, path, arguments in requests():
        answers = []
        for client, ids in zip(both_ways, remembered, strict=True):
            response = client.request(method, path.format(**ids), headers={**TOKEN, **arguments.get("headers", {})},
                                      **{k: v for k, v in arguments.items() if k != "headers"})
            if response.status_code == 201:
                ids["pushed"] = response.json()["id"]
            if path.startswith("/schedulers/boefje/pop") and response.status_code == 200 and response.json()["results"]:
                ids["popped"] = response.json()["results"][0]["id"]
            answers.append(comparable(response))
        assert answers[0] == answers[1], (method, path)
    hot, _ = both_ways
    assert hot.post("/schedulers/boefje/pop").status_code == 401  # the token check holds on the hot routes
    wrong = {"Authorization": "Bearer wrong"}
    assert hot.patch("/tasks/x", headers=wrong, json={"status": "running"}).status_code == 401


def test_a_failure_of_ours_is_a_logged_500_and_the_next_request_is_served(
        context: AppContext, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.ERROR, logger="kat_scheduler.server.hot_routes")
    queue = context.queues["boefje"]
    claim = queue.claim_batched

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    with TestClient(create_app(context, API_SETTINGS), raise_server_exceptions=False) as api:
        monkeypatch.setattr(queue, "claim_batched", broken)
        failed = api.post("/schedulers/boefje/pop", headers=TOKEN)
        assert failed.status_code == 500 and "see its log" in failed.json()["detail"]
        assert "POST /schedulers/boefje/pop failed" in caplog.text and "RuntimeError: a bug" in caplog.text
        monkeypatch.setattr(queue, "claim_batched", claim)
        assert api.post("/schedulers/boefje/pop", headers=TOKEN).json() == {"results": []}


def test_answers_are_the_json_the_standard_library_reads_back_also_beyond_64_bit_integers() -> None:
    document = {"name": "café ☕", "control": "\x01", "big": 2**70, "list": [1, 2.5, None, True]}
    assert json.loads(json_bytes(document)) == document
    assert json.loads(json_bytes({"small": 2**63 - 1})) == {"small": 2**63 - 1}


def test_stored_payloads_read_back_exactly_also_beyond_64_bit_integers() -> None:
    """A claim reads each task's payload with fast_json.loads: what the standard library wrote comes back the
    same, integers beyond 64 bits (which orjson would read as floats) and NaN included."""
    document = {"big": 2**70, "low": -(2**64), "edge": 2**63 - 1, "text": "1234567890123456789012", "x": 1.5}
    read = fast_json.loads(json.dumps(document))
    assert read == document and type(read["big"]) is int and type(read["low"]) is int
    assert math.isnan(fast_json.loads('{"n": NaN}')["n"])
