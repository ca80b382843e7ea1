"""The optional bearer token. With SCHEDULER_API_TOKEN set, every route that depends on `require_token`
answers 401 unless the request carries `Authorization: Bearer <token>`."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kat_scheduler.server.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="SCHEDULER_API_TOKEN, when the deployment sets one")


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """Async: it does no I/O, and a sync dependency would cost every request a hop to a worker thread."""
    expected: str | None = request.app.state.api.settings.token
    if expected is None:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "this API needs a bearer token", headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})
