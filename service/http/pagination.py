"""Keyset pagination at the edge: the list query string, the same for every list.

Query: `before`, `after` (opaque cursors; both at once is 400), `limit`
(1..100), `order` (`asc`|`desc`, default `desc`). Response:
`{"data": [...], "list_metadata": {"before": ..., "after": ...}}` where `after`
is null exactly when there is no next page. The database side (cursors, the
page's query) is `service.paging`.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.http.errors import ApiError, ValidationFailedError
from service.paging import MAX_LIMIT, PageQuery


def parse(query: Mapping[str, str], default_limit: int = 20) -> PageQuery:
    """Read `before`, `after`, `limit` and `order` from a query string."""
    before, after = query.get("before") or None, query.get("after") or None
    if before and after:
        raise ApiError(400, "invalid_pagination", "`before` and `after` cannot be used together")
    raw_limit = query.get("limit")
    limit = default_limit
    if raw_limit is not None:
        # Plain digits only: Python's int() also takes `1_0`, spaces and other scripts' digits.
        limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() else 0
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailedError.single(
                ["query", "limit"], f"limit must be an integer from 1 to {MAX_LIMIT}", "value_error"
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ValidationFailedError.single(
            ["query", "order"], "order must be `asc` or `desc`", "literal_error"
        )
    return PageQuery(
        before=before, after=after, limit=limit, order="asc" if order == "asc" else "desc"
    )
