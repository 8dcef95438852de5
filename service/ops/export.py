"""scripts/export-events: every event (or a run's, an organisation's, a time
window's) as JSON lines on stdout, in commit order, in constant memory.
The query and the line format are the event store's (`events.export`).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import IO

import asyncpg

from events import export
from events.connection import init_connection
from service import db


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp with its offset (naive times are refused: which zone?)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        msg = f"not an RFC 3339 time with an offset: {value}"
        raise ValueError(msg)
    return parsed



async def export_events(
    dsn: str,
    *,
    run_id: str | None = None,
    organisation_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    out: IO[bytes] | None = None,
    chunk: int = 1000,
) -> int:
    """scripts/export-events: stream events as JSON lines, in commit order, in constant memory.

    One REPEATABLE READ, read-only transaction gives a single consistent
    snapshot; a server-side cursor fetches `chunk` rows at a time, so memory
    does not grow with the store.
    """
    sink = out if out is not None else sys.stdout.buffer
    # No idle-in-transaction timeout: a slow consumer of stdout keeps the
    # transaction idle between fetches, legitimately.
    settings = {**db.SERVER_SETTINGS, "idle_in_transaction_session_timeout": "0"}
    conn = await asyncpg.connect(dsn, server_settings=settings)
    try:
        await init_connection(conn)
        count = 0
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for line in export.export_lines(
                conn,
                run_id=run_id,
                organisation_id=organisation_id,
                since=since,
                until=until,
                chunk=chunk,
            ):
                sink.write(line + b"\n")
                count += 1
        sink.flush()
    finally:
        await conn.close()
    print(f"exported {count} events", file=sys.stderr)
    return 0
