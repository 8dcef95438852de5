"""Repair after a restore: renumber `events.transaction_id` below this cluster's horizon.

`events.transaction_id` is the writing transaction's id (`xid8`), and
`read_all` trusts it for commit order. `pg_dump` copies the values, but after a
restore into *another* cluster they come from the old cluster's xid counter: if
they are above the new cluster's counter, `read_all` never returns them (they
look like transactions still to come) and new events sort *before* them.
`renumber` rewrites them, keeping their order, to just below its own
transaction id (and each stream's `last_transaction_id` to the highest of
them); it is the one statement that updates `events`, with the append-only
trigger off for that statement only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import msgspec

from events.store import Checkpoint

# The lowest normal transaction id: 0 is invalid (and the checkpoint origin),
# 1 and 2 are PostgreSQL's bootstrap and frozen ids.
FIRST_NORMAL_XID = 3


class NotEnoughRoomError(RuntimeError):
    """The cluster's transaction counter is too low to renumber below it."""


class Renumbering(msgspec.Struct, kw_only=True):
    """What `renumber` found and changed."""

    events: int
    transactions: int
    horizon: int
    renumbered: bool
    old_range: tuple[int, int] | None = None
    new_range: tuple[int, int] | None = None


# Each distinct transaction id, in order, and the id it becomes: a dense run
# ending at `$1 - 1` (the repairing transaction's own id minus one), so that
# every value is below it and every later transaction's id is above it.
_MAP = """
INSERT INTO repair_xid_map (old_tx, new_tx)
SELECT old_tx,
       (($1::bigint - count(*) OVER () + row_number() OVER (ORDER BY old_tx) - 1)::text)::xid8
           AS new_tx
  FROM (SELECT DISTINCT transaction_id AS old_tx FROM events) AS distinct_ids
"""

_CREATE_MAP = """
CREATE TEMP TABLE repair_xid_map (old_tx xid8 PRIMARY KEY, new_tx xid8 NOT NULL) ON COMMIT DROP
"""

_IDENTITY_MAP = """
INSERT INTO repair_xid_map (old_tx, new_tx)
SELECT DISTINCT transaction_id AS old_tx, transaction_id AS new_tx FROM events
"""

# The last event at or before a checkpoint, in the old commit order, and its new
# pair: `read_all` after either returns exactly the same next events.
_CHECKPOINT_TARGET = """
SELECT m.new_tx, e.global_position
  FROM events e JOIN repair_xid_map m ON m.old_tx = e.transaction_id
 WHERE (e.transaction_id, e.global_position) <= ($1::xid8, $2::bigint)
 ORDER BY e.transaction_id DESC, e.global_position DESC
 LIMIT 1
"""


async def burn_xids(conn: asyncpg.Connection, count: int) -> None:
    """Advance the cluster's transaction counter by `count` committed transactions.

    A DO block run outside a transaction block may COMMIT: each iteration is
    then its own transaction, which is much faster than a round trip per id.
    """
    await conn.execute(
        f"DO $$ BEGIN FOR i IN 1..{int(count)} LOOP"
        " PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
    )


async def transaction_count(conn: asyncpg.Connection) -> int:
    """How many distinct transactions wrote the stored events."""
    return int(await conn.fetchval("SELECT count(DISTINCT transaction_id) FROM events"))


async def current_xid(conn: asyncpg.Connection) -> int:
    """This cluster's transaction counter (a new transaction id, as an integer)."""
    return int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))


async def position_after(conn: asyncpg.Connection, old: Checkpoint) -> Checkpoint | None:
    """Inside `renumber`'s `moving` callback: the checkpoint that, after renumbering,
    stands where `old` stood (None when no event lies at or before it)."""
    target = await conn.fetchrow(_CHECKPOINT_TARGET, *old)
    if target is None:
        return None
    return Checkpoint(int(target["new_tx"]), int(target["global_position"]))


async def renumber(
    conn: asyncpg.Connection,
    *,
    also_lock: Sequence[str] = (),
    moving: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> Renumbering:
    """Renumber the events' transaction ids below this transaction's own, in one transaction.

    Args:
        conn: a connection outside any transaction.
        also_lock: other tables that must not change meanwhile (locked with
            `streams` and `events`, in one statement).
        moving: called inside the transaction once the old -> new map exists,
            before the events change: what follows the events (checkpoints)
            moves there, with `position_after`.

    Raises:
        NotEnoughRoomError: the counter is too low (see `burn_xids`).
    """
    async with conn.transaction():
        # Nothing may append (streams are written first by append_events) or
        # move what follows the events while the ids are renumbered.
        tables = ", ".join(("streams", "events", *also_lock))
        await conn.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        horizon = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        stats = await conn.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT transaction_id) AS transactions,"
            " min(transaction_id)::text::bigint AS low,"
            " max(transaction_id)::text::bigint AS high FROM events"
        )
        events, transactions = int(stats["events"]), int(stats["transactions"])
        report = Renumbering(
            events=events, transactions=transactions, horizon=horizon, renumbered=False
        )
        # Already below the horizon: all visible to read_all, every later append
        # sorts after them, and their order is theirs. Keep them (idempotence).
        needed = events > 0 and int(stats["high"]) >= horizon
        await conn.execute(_CREATE_MAP)
        if needed:
            first_new = horizon - transactions
            if first_new < FIRST_NORMAL_XID:
                shortfall = FIRST_NORMAL_XID - first_new
                msg = (
                    f"the cluster's transaction counter ({horizon}) is too low to renumber"
                    f" {transactions} transaction ids below it: {shortfall} more needed"
                )
                raise NotEnoughRoomError(msg)
            await conn.execute(_MAP, horizon)
            report.renumbered = True
            report.old_range = (int(stats["low"]), int(stats["high"]))
            report.new_range = (first_new, horizon - 1)
        else:
            await conn.execute(_IDENTITY_MAP)
        if moving is not None:
            await moving(conn)
        if needed:
            # History is append-only and the trigger refuses every UPDATE. This
            # one rewrites no event, only the bookkeeping of the cluster it now
            # lives in, so the trigger is off for this statement only, inside
            # this transaction: a failure rolls the ALTER back too, and nobody
            # else can write meanwhile (ALTER TABLE holds an ACCESS EXCLUSIVE lock).
            await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
            await conn.execute(
                "UPDATE events e SET transaction_id = m.new_tx"
                " FROM repair_xid_map m WHERE e.transaction_id = m.old_tx"
            )
            await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
            # Each stream's last appending transaction (events/sql/0005) came from
            # the old counter too: every event is now at or below `horizon - 1`,
            # and every later transaction above it.
            await conn.execute(
                "UPDATE streams SET last_transaction_id = (($1::bigint - 1)::text)::xid8",
                horizon,
            )
        return report
