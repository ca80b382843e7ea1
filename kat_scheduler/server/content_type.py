"""Request bodies without a Content-Type are read as JSON.

OpenKAT's boefje runner posts its JSON bodies without a Content-Type header. FastAPI reads a body as
JSON only when the header says so (and newer releases refuse the body otherwise), so this ASGI
middleware adds `content-type: application/json` to any request that carries none, before FastAPI
looks. Requests that name another type are left as they are and get FastAPI's answer to that type."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

JSON = (b"content-type", b"application/json")


class JsonByDefault:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(name == b"content-type" for name, _ in scope["headers"]):
            scope = {**scope, "headers": [*scope["headers"], JSON]}
        await self.app(scope, receive, send)
