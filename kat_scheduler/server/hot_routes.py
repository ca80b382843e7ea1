"""Push, pop and a task's PATCH, the calls runners make thousands of times a second, served without
FastAPI's routing, dependency solving and middleware layers, which cost more per request than the queue
operation itself.

The same handlers (schedulers.push_answer and pop_answer, tasks.patch_answer) serve the FastAPI routes,
which stay for the OpenAPI document and for every request the hot routes leave to them: another method,
another path, a query they do not read as plainly as FastAPI would (`pop?limit=abc`, a repeated or
unknown parameter). So both ways answer alike; the token check and the body size limit wrap both
(app.SchedulerApi).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from kat_scheduler.kinds import KINDS
from kat_scheduler.server.config import MAX_PAGE_SIZE
from kat_scheduler.server.deps import ApiState, pull_runner_name
from kat_scheduler.server.errors import error_body, known_error
from kat_scheduler.server.responses import Answer, json_bytes
from kat_scheduler.server.schedulers import pop_answer, push_answer
from kat_scheduler.server.tasks import patch_answer

logger = logging.getLogger(__name__)
SCOPE_KEY = "kat_scheduler.hot_route"
_PATH = re.compile(r"/schedulers/([a-z_]+)/(push|pop)")
_TASK_PATH = re.compile(r"/tasks/([^/]+)")
_POP_QUERY = re.compile(rb"(?:limit=([0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class HotRoute:
    kind: str  # the scheduler pushed to or popped from; for "patch", the task id
    operation: str  # "push", "pop" or "patch"
    limit: int = 1


def match(scope: Scope) -> HotRoute | None:
    """The hot route of a request, or None to leave it to FastAPI."""
    if scope["type"] != "http":
        return None
    if scope["method"] == "PATCH":
        task = _TASK_PATH.fullmatch(scope["path"])
        return HotRoute(task[1], "patch") if task else None
    if scope["method"] != "POST":
        return None
    found = _PATH.fullmatch(scope["path"])
    if found is None or found[1] not in KINDS:
        return None
    if found[2] == "push":
        return HotRoute(found[1], "push")
    query = _POP_QUERY.fullmatch(scope["query_string"])
    if query is None:
        return None
    limit = int(query[1]) if query[1] else 1
    return HotRoute(found[1], "pop", limit) if 1 <= limit <= MAX_PAGE_SIZE else None


class HotRoutes:
    """The ASGI app of the requests `match` took (it left its HotRoute in the scope)."""

    def __init__(self, state: ApiState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: HotRoute = scope[SCOPE_KEY]
        body = await _read_body(receive)
        try:
            answer = await self._answer(route, scope, body)
        except Exception as error:
            known = known_error(error, scope["method"], scope["path"])
            if known is None:
                logger.exception("%s %s failed", scope["method"], scope["path"])
                answer = Answer(500, error_body("the scheduler failed on this request; see its log"))
            else:
                answer = Answer(known.status, error_body(known.reason, known.field), known.headers)
        await _send(send, answer)

    def _answer(self, route: HotRoute, scope: Scope, body: bytes) -> Awaitable[Answer]:
        if route.operation == "push":
            return push_answer(self.state, route.kind, body)
        client = scope.get("client")
        runner = pull_runner_name(client[0] if client else None)
        if route.operation == "patch":
            return patch_answer(self.state, route.kind, body, runner)
        return pop_answer(self.state, route.kind, body, route.limit, runner)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, answer: Answer) -> None:
    body = json_bytes(answer.document)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in answer.headers.items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

