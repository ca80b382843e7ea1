"""The optional bearer token. With SCHEDULER_API_TOKEN set, every path but OPEN_PATHS answers 401 unless
the request carries `Authorization: Bearer <token>`.

A browser cannot add that header to the pages it opens, so the dashboard's paths (/dashboard...) also take
the cookie its sign-in form sets: not the token itself, but an HMAC of it (`dashboard_cookie`), which
opens only the dashboard. Its pages, refused, answer with the sign-in form.

An ASGI middleware rather than a FastAPI dependency: it costs nothing when no token is set (it is not
installed), and little when one is, on routes that runners call thousands of times a second."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/dashboard/login"})
DASHBOARD = "/dashboard"
DASHBOARD_COOKIE = "kat_scheduler_dashboard"
SCHEME = "HTTPBearer"
SECURITY_SCHEME = {"type": "http", "scheme": "bearer", "description": "SCHEDULER_API_TOKEN, when the deployment "
                                                                      "sets one"}


def dashboard_cookie(token: str) -> str:
    return hmac.new(token.encode(), b"kat_scheduler dashboard", hashlib.sha256).hexdigest()


class TokenCheck:
    def __init__(self, app: ASGIApp, token: str, sign_in_page: bytes = b"") -> None:
        self.app = app
        self.expected = f"bearer {token}".encode()
        self.expected_cookie = dashboard_cookie(token).encode()
        self.sign_in_page = sign_in_page  # the answer to a refused dashboard page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        bearer_valid = given is not None and secrets.compare_digest(_scheme_lowered(given), self.expected)
        if bearer_valid or (path.startswith(DASHBOARD) and self._dashboard_cookie_valid(scope)):
            await self.app(scope, receive, send)
        elif path.startswith(DASHBOARD) and self._is_page(scope) and self.sign_in_page:
            await _answer(send, 401, self.sign_in_page, b"text/html; charset=utf-8")
        elif given is None:
            await _refuse(send, "this API needs a bearer token")
        else:
            await _refuse(send, "the bearer token is not valid")

    def _dashboard_cookie_valid(self, scope: Scope) -> bool:
        header = next((value for name, value in scope["headers"] if name == b"cookie"), b"")
        for part in header.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == DASHBOARD_COOKIE.encode() and secrets.compare_digest(value, self.expected_cookie):
                return True
        return False

    @staticmethod
    def _is_page(scope: Scope) -> bool:
        """A page a person opens (not the data, the live refresh or an action)."""
        path: str = scope["path"]
        return scope["method"] == "GET" and not path.endswith(("/live", "/data"))


def _scheme_lowered(header: bytes) -> bytes:
    scheme, _, credentials = header.partition(b" ")
    return scheme.lower() + b" " + credentials.strip()


async def _refuse(send: Send, reason: str) -> None:
    await _answer(send, 401, json.dumps({"detail": reason}).encode(), b"application/json")


async def _answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


def document_security(document: dict[str, Any]) -> None:
    """Say in the OpenAPI document which operations need the token (all but those on OPEN_PATHS)."""
    document.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = SECURITY_SCHEME
    for path, operations in document.get("paths", {}).items():
        if path not in OPEN_PATHS:
            for operation in operations.values():
                operation["security"] = [{SCHEME: []}]
