"""Keyset pagination on `(created_at, id)`, the same for every list.

Query: `before`, `after` (opaque cursors; both at once is 400), `limit`
(1..100), `order` (`asc`|`desc`, default `desc`). Response:
`{"data": [...], "list_metadata": {"before": ..., "after": ...}}` where `after`
is null exactly when there is no next page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from service.errors import ApiError, ValidationFailedError
from service.models import ListMetadata

MAX_LIMIT = 100


class PageQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The pagination part of a list's query string."""

    before: tuple[datetime, str] | None = None
    after: tuple[datetime, str] | None = None
    limit: int = 20
    order: Literal["asc", "desc"] = "desc"


def encode_cursor(created_at: datetime, item_id: str) -> str:
    """An opaque cursor for the item `(created_at, id)`."""
    raw = msgspec.json.encode([created_at, item_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(name: str, value: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        created_at, item_id = msgspec.json.decode(raw, type=tuple[datetime, str])
    except (binascii.Error, ValueError, msgspec.DecodeError) as error:
        raise ApiError(
            400, "invalid_cursor", f"`{name}` is not a cursor this API issued"
        ) from error
    return created_at, item_id


def parse(query: Mapping[str, str], default_limit: int = 20) -> PageQuery:
    """Read `before`, `after`, `limit` and `order` from a query string."""
    before, after = query.get("before"), query.get("after")
    if before and after:
        raise ApiError(400, "invalid_pagination", "`before` and `after` cannot be used together")
    raw_limit = query.get("limit")
    limit = default_limit
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
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
        before=_decode_cursor("before", before) if before else None,
        after=_decode_cursor("after", after) if after else None,
        limit=limit,
        order="asc" if order == "asc" else "desc",
    )


async def fetch_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    select: str,
    params: Sequence[Any],
    page: PageQuery,
) -> tuple[list[asyncpg.Record], ListMetadata]:
    """One page of `select`, a query ending in a WHERE clause that returns `created_at`, `id`."""
    forward = page.before is None
    ascending = (page.order == "asc") == forward
    cursor = page.after if forward else page.before
    args = list(params)
    sql = select
    if cursor is not None:
        args.extend(cursor)
        comparison = ">" if ascending else "<"
        sql += f" AND (created_at, id) {comparison} (${len(args) - 1}, ${len(args)})"
    direction = "ASC" if ascending else "DESC"
    args.append(page.limit + 1)
    sql += f" ORDER BY created_at {direction}, id {direction} LIMIT ${len(args)}"
    rows = list(await conn.fetch(sql, *args))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    if not forward:
        rows.reverse()
    first = encode_cursor(rows[0]["created_at"], rows[0]["id"]) if rows else None
    last = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if rows else None
    if forward:
        metadata = ListMetadata(
            before=first if page.after is not None else None, after=last if more else None
        )
    else:
        metadata = ListMetadata(before=first if more else None, after=last)
    return rows, metadata
