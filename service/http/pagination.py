"""Keyset pagination, the same for every list.

Query: `before`, `after` (opaque cursors; both at once is 400), `limit`
(1..100), `order` (`asc`|`desc`, default `desc`). Response:
`{"data": [...], "list_metadata": {"before": ..., "after": ...}}` where `after`
is null exactly when there is no next page. Items are ordered by a key column
and then `id` (`created_at` for most lists; a result's position in its run).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import msgspec

from service.http.errors import ApiError, ValidationFailedError
from service.models import ListMetadata

MAX_LIMIT = 100
# What a cursor looks like: unpadded URL-safe base64 (see `encode_cursor`).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"
_CURSOR = re.compile(CURSOR_PATTERN)
# Integer keys are positions, a PostgreSQL integer; ids are never longer.
_MAX_INT_KEY = 2**31 - 1
_MAX_ID = 255


class PageQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The pagination part of a list's query string (cursors still opaque)."""

    before: str | None = None
    after: str | None = None
    limit: int = 20
    order: Literal["asc", "desc"] = "desc"


def encode_cursor(key: Any, item_id: str) -> str:
    """An opaque cursor for the item `(key, id)`."""
    raw = msgspec.json.encode([key, item_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(name: str, value: str, key_type: type) -> tuple[Any, str]:
    """The `(key, id)` of a cursor, or a 400: never a value the database would refuse."""
    try:
        if not _CURSOR.fullmatch(value):
            raise ValueError(value)
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        decoded: tuple[Any, str] = msgspec.json.decode(raw, type=tuple[key_type, str])  # type: ignore[valid-type]
        key, item_id = decoded
        if len(item_id) > _MAX_ID or "\x00" in item_id:
            raise ValueError(item_id)
        if isinstance(key, datetime):
            # Naive: not ours. Converted now: an offset that leaves the calendar fails here.
            if key.tzinfo is None:
                raise ValueError(key)
            key = key.astimezone(UTC)
        elif isinstance(key, int) and not -_MAX_INT_KEY <= key <= _MAX_INT_KEY:
            raise ValueError(key)
    except (binascii.Error, ValueError, OverflowError, msgspec.DecodeError) as error:
        raise ApiError(
            400, "invalid_cursor", f"`{name}` is not a cursor this API issued"
        ) from error
    return key, item_id


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


async def fetch_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    select: str,
    params: Sequence[Any],
    page: PageQuery,
    *,
    key: str = "created_at",
    key_type: type = datetime,
    table: str = "",
) -> tuple[list[asyncpg.Record], ListMetadata]:
    """One page of `select`: a query ending in a WHERE clause that returns `key` and `id`.

    `table` qualifies the key and id columns when the query joins (`r` for `r.id`).
    """
    column, id_column = (f"{table}.{key}", f"{table}.id") if table else (key, "id")
    forward = page.before is None
    ascending = (page.order == "asc") == forward
    raw_cursor = page.after if forward else page.before
    args = list(params)
    sql = select
    if raw_cursor is not None:
        args.extend(_decode_cursor("after" if forward else "before", raw_cursor, key_type))
        comparison = ">" if ascending else "<"
        sql += f" AND ({column}, {id_column}) {comparison} (${len(args) - 1}, ${len(args)})"
    direction = "ASC" if ascending else "DESC"
    args.append(page.limit + 1)
    sql += f" ORDER BY {column} {direction}, {id_column} {direction} LIMIT ${len(args)}"
    rows = list(await conn.fetch(sql, *args))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    if not forward:
        rows.reverse()
    first = encode_cursor(rows[0][key], rows[0]["id"]) if rows else None
    last = encode_cursor(rows[-1][key], rows[-1]["id"]) if rows else None
    if forward:
        metadata = ListMetadata(
            before=first if page.after is not None else None, after=last if more else None
        )
    else:
        metadata = ListMetadata(before=first if more else None, after=last)
    return rows, metadata
