"""Every event (or a run's, an organisation's, a time window's) as JSON lines, in
commit order, in constant memory: the export's query and its line format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from events import codec
from events.streams import stream_of

_encode = msgspec.json.Encoder().encode

_EXPORT_COLUMNS = """
SELECT e.global_position, e.stream_id, e.version, e.type, e.schema_version, e.event_id,
       e.occurred_at, e.recorded_at, e.data, e.metadata
  FROM events e
"""

# The organisation of a run is in its first event (`run.created`): the events
# are the source of truth, so an export works even with stale read models.
_ORGANISATION_FILTER = """
EXISTS (SELECT 1 FROM events c
         WHERE c.stream_id = e.stream_id AND c.version = 1 AND c.type = 'run.created'
           AND c.data ->> 'organisation_id' = ${n})
"""


def export_query(
    *,
    run_id: str | None = None,
    organisation_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[str, list[Any]]:
    """The export's SQL and arguments: filtered, in commit order."""
    where: list[str] = []
    args: list[Any] = []
    if run_id is not None:
        args.append(stream_of(run_id))
        where.append(f"e.stream_id = ${len(args)}")
    if organisation_id is not None:
        args.append(organisation_id)
        where.append(_ORGANISATION_FILTER.format(n=len(args)).strip())
    if since is not None:
        args.append(since)
        where.append(f"e.recorded_at >= ${len(args)}")
    if until is not None:
        args.append(until)
        where.append(f"e.recorded_at < ${len(args)}")
    sql = _EXPORT_COLUMNS
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY e.transaction_id, e.global_position", args


def export_line(row: asyncpg.Record) -> bytes:
    """One event as a JSON object: `data` upcast to the current schema, `metadata` as stored."""
    event = codec.decode(row["type"], row["schema_version"], row["data"])
    line: dict[str, Any] = {
        "global_position": row["global_position"],
        "stream_id": row["stream_id"],
        "version": row["version"],
        "type": row["type"],
        "schema_version": row["schema_version"],
        "event_id": row["event_id"],
        "occurred_at": row["occurred_at"],
        "recorded_at": row["recorded_at"],
        "data": event,
        "metadata": msgspec.Raw(row["metadata"]),
    }
    return _encode(line)


async def export_lines(
    conn: asyncpg.Connection,
    *,
    run_id: str | None = None,
    organisation_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk: int = 1000,
) -> AsyncIterator[bytes]:
    """Each selected event as one JSON line (no newline), in commit order.

    Call it inside a transaction (one snapshot; a server-side cursor fetches
    `chunk` rows at a time); `conn` set up by `events.connection.init_connection`.
    """
    sql, args = export_query(
        run_id=run_id, organisation_id=organisation_id, since=since, until=until
    )
    async for row in conn.cursor(sql, *args, prefetch=chunk):
        yield export_line(row)
