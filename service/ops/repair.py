"""Operations on the whole store: scripts/repair-after-restore and scripts/export-events.

Repair: `events.transaction_id` is the writing transaction's id (`xid8`), and
`read_all` trusts it for commit order. `pg_dump` copies the values, but after a
restore into *another* cluster they come from the old cluster's xid counter: if
they are above the new cluster's counter, `read_all` never returns them (they
look like transactions still to come) and new events sort *before* them. The
repair renumbers them, keeping their order, to just below its own transaction id.

Export: every event (or a run's, an organisation's, a time window's) as JSON
lines, in commit order, in constant memory.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import IO, Any

import asyncpg
import msgspec

from events import codec
from events.store import init_connection
from service import db

# The lowest normal transaction id: 0 is invalid (and the checkpoint origin),
# 1 and 2 are PostgreSQL's bootstrap and frozen ids.
FIRST_NORMAL_XID = 3

# Room kept below the horizon when burning transaction ids, so that a second
# attempt does not come up short by the few ids spent meanwhile.
_BURN_MARGIN = 16

_encode = msgspec.json.Encoder().encode


class NotEnoughRoomError(RuntimeError):
    """The cluster's transaction counter is too low to renumber below it."""


class RepairReport(msgspec.Struct, kw_only=True):
    """What repair-after-restore changed."""

    events: int
    transactions: int
    horizon: int
    renumbered: bool
    old_range: tuple[int, int] | None = None
    new_range: tuple[int, int] | None = None
    checkpoints: list[tuple[str, tuple[int, int], tuple[int, int]]] = msgspec.field(
        default_factory=list
    )


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


async def _burn_xids(conn: asyncpg.Connection, count: int) -> None:
    """Advance the cluster's transaction counter by `count` committed transactions.

    A DO block run outside a transaction block may COMMIT: each iteration is
    then its own transaction, which is much faster than a round trip per id.
    """
    await conn.execute(
        f"DO $$ BEGIN FOR i IN 1..{int(count)} LOOP"
        " PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
    )


async def _repair_once(conn: asyncpg.Connection) -> RepairReport:
    async with conn.transaction():
        # Nothing may append (streams are written first by append_events) or
        # move a projection checkpoint while the ids are renumbered.
        await conn.execute("LOCK TABLE streams, events, projection_checkpoints IN EXCLUSIVE MODE")
        horizon = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        stats = await conn.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT transaction_id) AS transactions,"
            " min(transaction_id)::text::bigint AS low,"
            " max(transaction_id)::text::bigint AS high FROM events"
        )
        events, transactions = int(stats["events"]), int(stats["transactions"])
        report = RepairReport(
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

        for row in await conn.fetch(
            "SELECT name, transaction_id::text::bigint AS tx, global_position"
            " FROM projection_checkpoints ORDER BY name"
        ):
            old = (int(row["tx"]), int(row["global_position"]))
            new = (0, 0)
            if old != (0, 0):
                target = await conn.fetchrow(_CHECKPOINT_TARGET, old[0], old[1])
                if target is not None:
                    new = (int(target["new_tx"]), int(target["global_position"]))
            if new != old:
                await conn.execute(
                    "UPDATE projection_checkpoints SET transaction_id = $2::xid8,"
                    " global_position = $3, updated_at = now() WHERE name = $1",
                    row["name"],
                    new[0],
                    new[1],
                )
                report.checkpoints.append((row["name"], old, new))

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
        return report


async def repair(conn: asyncpg.Connection, *, burn: bool = True) -> RepairReport:
    """Renumber `events.transaction_id` (and the async checkpoints) below this cluster's horizon.

    Args:
        conn: a connection outside any transaction.
        burn: when the counter is too low for the renumbering, advance it (by
            committing empty transactions) and try again, instead of failing.

    Raises:
        NotEnoughRoomError: the counter is too low and `burn` is False.
    """
    try:
        return await _repair_once(conn)
    except NotEnoughRoomError:
        if not burn:
            raise
    transactions = int(await conn.fetchval("SELECT count(DISTINCT transaction_id) FROM events"))
    current = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
    await _burn_xids(conn, max(0, transactions + FIRST_NORMAL_XID - current) + _BURN_MARGIN)
    return await _repair_once(conn)


def _describe(report: RepairReport) -> str:
    lines: list[str] = []
    if report.renumbered:
        assert report.old_range is not None  # noqa: S101  (set whenever renumbered)
        assert report.new_range is not None  # noqa: S101
        lines.append(
            f"renumbered {report.transactions} transaction ids of {report.events} events:"
            f" {report.old_range[0]}..{report.old_range[1]} ->"
            f" {report.new_range[0]}..{report.new_range[1]}"
            f" (this cluster's horizon: {report.horizon})"
        )
    else:
        lines.append(
            f"events: nothing to renumber ({report.events} events, every transaction id"
            f" below this cluster's horizon {report.horizon})"
        )
    lines.extend(
        f"checkpoint {name}: ({old[0]}, {old[1]}) -> ({new[0]}, {new[1]})"
        for name, old, new in report.checkpoints
    )
    if not report.checkpoints:
        lines.append("checkpoints: nothing to change")
    return "\n".join(lines)


async def repair_after_restore(dsn: str, *, burn: bool = True) -> int:
    """scripts/repair-after-restore: repair, print what changed; exit 1 when it cannot."""
    conn = await asyncpg.connect(dsn, server_settings=db.SERVER_SETTINGS)
    try:
        report = await repair(conn, burn=burn)
    except NotEnoughRoomError as error:
        print(
            f"repair-after-restore: {error}. Run it again without --no-burn, or advance"
            " the counter yourself (e.g. run `SELECT pg_current_xact_id()` in that many"
            " separate transactions) and run it again. Nothing was changed.",
            file=sys.stderr,
        )
        return 1
    finally:
        await conn.close()
    print(_describe(report))
    return 0


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


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp with its offset (naive times are refused: which zone?)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        msg = f"not an RFC 3339 time with an offset: {value}"
        raise ValueError(msg)
    return parsed


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
        args.append(f"run-{run_id}")
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
    sql, args = export_query(
        run_id=run_id, organisation_id=organisation_id, since=since, until=until
    )
    # No idle-in-transaction timeout: a slow consumer of stdout keeps the
    # transaction idle between fetches, legitimately.
    settings = {**db.SERVER_SETTINGS, "idle_in_transaction_session_timeout": "0"}
    conn = await asyncpg.connect(dsn, server_settings=settings)
    try:
        await init_connection(conn)
        count = 0
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in conn.cursor(sql, *args, prefetch=chunk):
                sink.write(export_line(row) + b"\n")
                count += 1
        sink.flush()
    finally:
        await conn.close()
    print(f"exported {count} events", file=sys.stderr)
    return 0
