"""Async projections: read models that follow the store in commit order.

A projection names the event types it handles and an `apply` that writes its
rows. `catch_up` reads the events after the projection's checkpoint
(`read_all`, commit order: nothing committed late is ever skipped), applies the
ones it handles, and moves the checkpoint, all in one transaction: a crash
leaves rows and checkpoint consistent, and each event is applied exactly once.
The checkpoint row is locked for the batch, so two processes following the same
projection take turns instead of applying a batch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import asyncpg
import structlog

from events.store import Checkpoint, EventStore, checkpoint_of
from events.types import RecordedEvent

log = structlog.get_logger("projections.async")

_LOCK_CHECKPOINT = """
SELECT transaction_id, global_position FROM projection_checkpoints WHERE name = $1 FOR UPDATE
"""

_SAVE_CHECKPOINT = """
UPDATE projection_checkpoints
   SET transaction_id = $2, global_position = $3, updated_at = now()
 WHERE name = $1
"""


class AsyncProjection(Protocol):
    """A read model kept from the events, after the fact."""

    name: str
    handles: frozenset[str]

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        """Write the rows for these events (in commit order), in the caller's transaction."""

    async def reset(self, conn: asyncpg.Connection) -> None:
        """Delete every row, in the caller's transaction."""


async def rebuild(pool: asyncpg.Pool, projection: AsyncProjection) -> int:
    """Empty a projection and replay the whole store into it; return the events read."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.name,
        )
        await conn.fetchrow(_LOCK_CHECKPOINT, projection.name)
        await projection.reset(conn)
        await conn.execute(_SAVE_CHECKPOINT, projection.name, 0, 0)
    total = 0
    while read := await catch_up(pool, projection):
        total += read
    return total


async def catch_up(pool: asyncpg.Pool, projection: AsyncProjection, batch: int = 500) -> int:
    """Apply the next batch of events to a projection; return how many events were read."""
    store = EventStore(pool)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.name,
        )
        row = await conn.fetchrow(_LOCK_CHECKPOINT, projection.name)
        after = Checkpoint(int(row["transaction_id"]), int(row["global_position"]))
        events = await store.read_all(after, batch, conn=conn)
        if not events:
            return 0
        relevant = [event for event in events if event.type in projection.handles]
        if relevant:
            await projection.apply(conn, relevant)
        last = checkpoint_of(events[-1])
        await conn.execute(_SAVE_CHECKPOINT, projection.name, *last)
        return len(events)


async def follow(
    pool: asyncpg.Pool,
    projections: Sequence[AsyncProjection],
    stop: asyncio.Event,
    *,
    idle_s: float = 0.2,
) -> None:
    """Keep projections caught up until `stop` is set (polling; a batch follows a full one)."""
    while not stop.is_set():
        busy = False
        for projection in projections:
            try:
                busy = await catch_up(pool, projection) > 0 or busy
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("projection_failed", projection=projection.name, error=str(error))
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=idle_s)
