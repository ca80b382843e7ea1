"""Offset pagination as OpenKAT answers it: links to the previous and next page, or null."""

from __future__ import annotations

from fastapi import Request


def page_links(request: Request, offset: int, limit: int, count: int) -> tuple[str | None, str | None]:
    """No links for a count-only query (limit 0)."""
    previous = None
    if limit == 0:
        return None, None
    if offset > 0:
        previous = str(request.url.include_query_params(offset=max(0, offset - limit), limit=limit))
    following = None
    if offset + limit < count:
        following = str(request.url.include_query_params(offset=offset + limit, limit=limit))
    return previous, following
