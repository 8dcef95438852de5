"""scripts/repair-after-restore: after restoring a dump into another cluster,
renumber the events' transaction ids (events.repair) and move the async
projections' checkpoints with them (projections.asynchronous), in one
transaction; print what changed.
"""

from __future__ import annotations

import sys

import asyncpg
import msgspec

from events.repair import (
    FIRST_NORMAL_XID,
    NotEnoughRoomError,
    Renumbering,
    burn_xids,
    current_xid,
    renumber,
    transaction_count,
)
from projections.asynchronous import move_checkpoints
from service import db

# Room kept below the horizon when burning transaction ids, so that a second
# attempt does not come up short by the few ids spent meanwhile.
_BURN_MARGIN = 16


class RepairReport(Renumbering, kw_only=True):
    """What repair-after-restore changed: the events' renumbering, and each async
    projection's checkpoint (name, before, after)."""

    checkpoints: list[tuple[str, tuple[int, int], tuple[int, int]]] = msgspec.field(
        default_factory=list
    )


async def _repair_once(conn: asyncpg.Connection) -> RepairReport:
    checkpoints: list[tuple[str, tuple[int, int], tuple[int, int]]] = []

    async def moving(conn: asyncpg.Connection) -> None:
        checkpoints.extend(await move_checkpoints(conn))

    done = await renumber(conn, also_lock=("projection_checkpoints",), moving=moving)
    return RepairReport(**msgspec.structs.asdict(done), checkpoints=checkpoints)


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
    transactions = await transaction_count(conn)
    current = await current_xid(conn)
    await burn_xids(conn, max(0, transactions + FIRST_NORMAL_XID - current) + _BURN_MARGIN)
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
