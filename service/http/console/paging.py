"""Links to the neighbouring pages of a keyset-paginated list."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from service.models import ListMetadata


def links(request: web.Request, found: ListMetadata) -> dict[str, str | None]:
    """`previous` and `next` URLs for the page: the same query, with the other cursor."""
    kept = [(k, v) for k, v in request.query.items() if k not in ("before", "after")]

    def url(name: str, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        return f"{request.path}?{urlencode([*kept, (name, cursor)])}"

    return {"previous": url("before", found.before), "next": url("after", found.after)}
