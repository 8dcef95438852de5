"""Every read of `events` and `streams` that is not the store's own API.

`EventStore` appends and reads streams and the feed (see `read_all`). The readers
above it need a few more shapes, and they ask for them here, by name, instead
of holding SQL on the store's tables: a page of a stream for the run feed, a
terminal event seen, the rebuild's bulk reads, the last position final in the
feed's order, the checkpoint lag, the streams written after a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import asyncpg

from events.store import STREAM_COLUMNS, Checkpoint, recorded_events
from events.types import RecordedEvent

_PAGE = f"""
SELECT {STREAM_COLUMNS} FROM events
 WHERE stream_id = $1 AND version > $2
 ORDER BY version
 LIMIT $3
"""

_TYPE_SEEN = """
SELECT EXISTS (
  SELECT 1 FROM events WHERE stream_id = $1 AND version <= $2 AND type = ANY ($3::text[])
)
"""

# The last event in the feed's order that can never be preceded by another (see
# EventStore.read_all): written by a transaction older than every open one.
_LAST_FINAL = """
SELECT transaction_id, global_position FROM events
 WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY transaction_id DESC, global_position DESC
 LIMIT 1
"""

_COUNT_AFTER = """
SELECT count(*) FROM events
 WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
"""

# What the rebuild's fold reads of every event of a range of streams (bounds
# may be NULL: open), ordered by stream and version.
EVENTS_OF_STREAMS = """
SELECT stream_id, version, type, schema_version, data, occurred_at
  FROM events
 WHERE ($1::text IS NULL OR stream_id >= $1) AND ($2::text IS NULL OR stream_id < $2)
 ORDER BY stream_id, version
"""

# A stream's events without their data: what each was, when, by whom (the
# data of a run.created of 10,000 tests is megabytes).
_EVENT_HEADS = """
SELECT version, type, occurred_at, metadata->>'actor' AS actor,
       metadata->>'request_id' AS request_id
  FROM events
 WHERE stream_id = $1 AND version > $2
 ORDER BY version
 LIMIT $3
"""

_STREAMS = "SELECT stream_id, version FROM streams ORDER BY stream_id"

_UNSEEN_STREAMS = """
SELECT DISTINCT stream_id FROM events
 WHERE transaction_id >= pg_snapshot_xmin($1::text::pg_snapshot)
   AND NOT pg_visible_in_snapshot(transaction_id, $1::text::pg_snapshot)
"""


async def stream_page(
    conn: asyncpg.Connection | asyncpg.Pool, stream_id: str, after: int, limit: int
) -> tuple[list[RecordedEvent], bool]:
    """Up to `limit` events of a stream with `version > after`, and whether more follow."""
    # One extra row answers "is there more?" without a count.
    rows = await conn.fetch(_PAGE, stream_id, after, limit + 1)
    return recorded_events(repeat(stream_id), rows[:limit]), len(rows) > limit


async def event_heads(
    conn: asyncpg.Connection | asyncpg.Pool, stream_id: str, after: int, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` heads of the stream's events after version `after`, in version order:
    version, type, occurred_at, and the metadata's actor and request_id."""
    rows: list[asyncpg.Record] = await conn.fetch(_EVENT_HEADS, stream_id, after, limit)
    return rows


async def type_seen(
    conn: asyncpg.Connection | asyncpg.Pool, stream_id: str, up_to: int, types: Sequence[str]
) -> bool:
    """Whether the stream holds an event of one of `types` at a version up to `up_to`."""
    return bool(await conn.fetchval(_TYPE_SEEN, stream_id, up_to, list(types)))


async def last_final(conn: asyncpg.Connection | asyncpg.Pool) -> Checkpoint | None:
    """The last place in commit order no later commit can precede; None for an empty store."""
    row = await conn.fetchrow(_LAST_FINAL)
    return None if row is None else Checkpoint(row["transaction_id"], row["global_position"])


async def count_after(conn: asyncpg.Connection | asyncpg.Pool, checkpoint: Checkpoint) -> int:
    """How many events lie after a checkpoint in commit order (a projection's lag)."""
    return int(await conn.fetchval(_COUNT_AFTER, *checkpoint))


async def stream_lengths(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every stream and its version (its length), ordered by stream id."""
    return list(await conn.fetch(_STREAMS))


async def events_of_streams(conn: asyncpg.Connection, first: str | None, before: str | None) -> Any:
    """A server-side cursor over every event row (`stream_id, version, type,
    schema_version, data, occurred_at`) of the streams in [first, before) (None:
    open), by stream and version. Call it inside a transaction."""
    return await conn.cursor(EVENTS_OF_STREAMS, first, before)


async def streams_unseen_by(conn: asyncpg.Connection | asyncpg.Pool, snapshot: str) -> list[str]:
    """The streams written by transactions that an exported snapshot does not see."""
    return [row["stream_id"] for row in await conn.fetch(_UNSEEN_STREAMS, snapshot)]


async def lock_streams_against_appends(conn: asyncpg.Connection, schema: str = "public") -> None:
    """Hold every append off until the caller's transaction ends (appends move `streams`)."""
    await conn.execute(f"LOCK TABLE {schema}.streams IN SHARE ROW EXCLUSIVE MODE")
