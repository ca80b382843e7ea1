"""The optional bearer token. With SCHEDULER_API_TOKEN set, every path but OPEN_PATHS answers 401 unless
the request carries `Authorization: Bearer <token>`.

An ASGI middleware rather than a FastAPI dependency: it costs nothing when no token is set (it is not
installed), and little when one is, on routes that runners call thousands of times a second."""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
SCHEME = "HTTPBearer"
SECURITY_SCHEME = {"type": "http", "scheme": "bearer", "description": "SCHEDULER_API_TOKEN, when the deployment "
                                                                      "sets one"}


class TokenCheck:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        if given is None:
            await _refuse(send, "this API needs a bearer token")
        elif not secrets.compare_digest(_scheme_lowered(given), self.expected):
            await _refuse(send, "the bearer token is not valid")
        else:
            await self.app(scope, receive, send)


def _scheme_lowered(header: bytes) -> bytes:
    scheme, _, credentials = header.partition(b" ")
    return scheme.lower() + b" " + credentials.strip()


async def _refuse(send: Send, reason: str) -> None:
    body = json.dumps({"detail": reason}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


def document_security(document: dict[str, Any]) -> None:
    """Say in the OpenAPI document which operations need the token (all but those on OPEN_PATHS)."""
    document.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = SECURITY_SCHEME
    for path, operations in document.get("paths", {}).items():
        if path not in OPEN_PATHS:
            for operation in operations.values():
                operation["security"] = [{SCHEME: []}]
