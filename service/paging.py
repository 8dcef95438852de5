"""Keyset pagination's database side, the same for every list.

Items are ordered by a key column and then `id` (`created_at` for most lists; a
result's position in its run). A cursor is the opaque `(key, id)` of an item;
`fetch_page` decodes it (a cursor we never issued is `Refused`), runs the page's
query and answers the rows with the list's `before`/`after` cursors. Reading
the query string is the edge's (`service.http.pagination.parse`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import msgspec

from service.domain import Refused
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
        raise Refused("invalid_cursor", f"`{name}` is not a cursor this API issued") from error
    return key, item_id


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
