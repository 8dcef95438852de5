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
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import asyncpg
import structlog

from events import locks, reads, repair
from events.retry import Backoff, describe_error
from events.store import ORIGIN, Checkpoint, EventStore, checkpoint_of
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

    async def rebuild(self, conn: asyncpg.Connection) -> None:
        """Recompute every row from the inline read models, in the caller's transaction.

        The result must equal applying every event committed before the call
        began; applying some of those events again afterwards must change
        nothing (`rebuild` below replays from a checkpoint taken before it).
        """


async def rebuild(pool: asyncpg.Pool, projection: AsyncProjection) -> int:
    """Recompute a projection and move its checkpoint; return the events read after it.

    Under the checkpoint row's lock (followers wait): take the last event that
    every reader can see in commit order, recompute the rows from the read
    models (which reflect at least every event up to it), and checkpoint there.
    Events after it are then applied as usual, some perhaps a second time,
    which a projection's `rebuild` contract allows.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.name,
        )
        await conn.fetchrow(_LOCK_CHECKPOINT, projection.name)
        last = await reads.last_final(conn)
        await projection.rebuild(conn)
        await conn.execute(_SAVE_CHECKPOINT, projection.name, *(last or ORIGIN))
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


LEADER_LOCK = locks.PROJECTION_LEADER  # the leader's session lock
_MOST_BACKOFF_S = 10.0  # the longest wait between a leader's tries
Connect = Callable[[], Awaitable[asyncpg.Connection]]


async def follow(
    pool: asyncpg.Pool,
    projections: Sequence[AsyncProjection],
    stop: asyncio.Event,
    *,
    connect: Connect,
    idle_s: float = 1.0,
    standby_s: float = 2.0,
) -> None:
    """Keep projections caught up until `stop` is set, as this deployment's leader.

    One process at a time leads: the one holding the session advisory lock
    LEADER_LOCK on its own connection (from `connect`). The others stand by and
    try again every `standby_s`; when the leader dies its connection goes, the
    lock with it, and a standby takes over from the checkpoints. The leader
    wakes on NOTIFY (channel `events`) and polls every `idle_s` anyway: a missed
    notification delays, never loses. (The checkpoint row lock of `catch_up`
    keeps even two leaders from applying a batch twice.)
    """
    failures = 0  # in a row: the wait before the next try grows with them
    while not stop.is_set():
        try:
            conn = await connect()
        except Exception as error:  # never exit: PostgreSQL may be restarting
            failures += 1
            log.warning("projection_leader_connect_failed", error=describe_error(error))
            await _sleep(stop, Backoff(standby_s, _MOST_BACKOFF_S).delay(failures))
            continue
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK):
                log.info("projection_leader_elected")
                failures = 0
                await _lead(pool, projections, stop, conn, idle_s)
            else:
                failures = 0
                await _sleep(stop, standby_s)
        except Exception as error:  # the connection broke: stand by, then try again
            failures += 1
            log.warning("projection_leader_lost", error=describe_error(error))
            await _sleep(stop, Backoff(idle_s, _MOST_BACKOFF_S).delay(failures))
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


async def _lead(
    pool: asyncpg.Pool,
    projections: Sequence[AsyncProjection],
    stop: asyncio.Event,
    conn: asyncpg.Connection,
    idle_s: float,
) -> None:
    wake = asyncio.Event()
    await conn.add_listener("events", lambda *_: wake.set())
    while not stop.is_set() and not conn.is_closed():
        wake.clear()
        busy = False
        for projection in projections:
            try:
                busy = await catch_up(pool, projection) > 0 or busy
            except Exception as error:  # the database failed; the checkpoint did not move
                log.warning(
                    "projection_failed", projection=projection.name, error=describe_error(error)
                )
        if busy:
            continue
        # Still the leader? (A closed connection means the lock is gone.)
        await conn.fetchval("SELECT 1")
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
        await asyncio.wait(waiters, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def status(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, object]]:
    """Each projection's checkpoint, when it moved, and how many events it has yet to read."""
    rows = await conn.fetch(
        """
        SELECT name, transaction_id::text AS transaction_id, global_position, updated_at
          FROM projection_checkpoints ORDER BY name
        """
    )
    found: list[dict[str, object]] = []
    for row in rows:
        at = Checkpoint(int(row["transaction_id"]), int(row["global_position"]))
        found.append({**dict(row), "lag": await reads.count_after(conn, at)})
    return found


async def move_checkpoints(
    conn: asyncpg.Connection,
) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """Inside `events.repair.renumber`: move every checkpoint to where it stands after
    the renumbering; return `(name, old, new)` for each one that moved."""
    moved: list[tuple[str, tuple[int, int], tuple[int, int]]] = []
    for row in await conn.fetch(
        "SELECT name, transaction_id::text::bigint AS tx, global_position"
        " FROM projection_checkpoints ORDER BY name"
    ):
        old = (int(row["tx"]), int(row["global_position"]))
        new = (0, 0)
        if old != (0, 0):
            target = await repair.position_after(conn, Checkpoint(*old))
            if target is not None:
                new = (target.transaction_id, target.global_position)
        if new != old:
            await conn.execute(
                "UPDATE projection_checkpoints SET transaction_id = $2::xid8,"
                " global_position = $3, updated_at = now() WHERE name = $1",
                row["name"],
                new[0],
                new[1],
            )
            moved.append((row["name"], old, new))
    return moved
