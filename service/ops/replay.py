"""The audit and operations commands behind scripts/replay-run and scripts/rebuild-projections."""

from __future__ import annotations

import sys
from typing import Any

import msgspec
from tqdm import tqdm

from events.store import EventStore
from events.streams import stream_of
from events.types import EVENT_TYPES
from projections import asynchronous, readmodel
from projections.rebuild import RebuildReport, VerificationError, rebuild
from projections.replay import Replay, ReplayStep
from projections.resources import WorkflowTestRun
from service import db

_encode = msgspec.json.Encoder().encode


def _counts(run: WorkflowTestRun) -> str:
    c = run.counts
    return (
        f"q{c.queued} r{c.running} p{c.passed} f{c.failed} b{c.blocked} e{c.error} c{c.cancelled}"
    )


class _Table:
    """The replay table, printed a row at a time (column widths known up front)."""

    HEADER = ("ver", "type", "occurred_at", "run status", "counts", "result")

    def __init__(self, last_version: int) -> None:
        digits = len(str(last_version))
        self.widths = (
            max(digits, 3),
            max(len(tag) for tag in EVENT_TYPES),
            len("2026-01-01T00:00:00.000+00:00"),
            len("run status"),
            7 * (1 + digits) + 6,  # q.. r.. p.. f.. b.. e.. c..: each count <= the events
            0,
        )

    def line(self, cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

    def head(self) -> str:
        return (
            self.line(self.HEADER)
            + "\n"
            + self.line((*("-" * w for w in self.widths[:-1]), "------"))
        )

    def row(self, s: ReplayStep) -> str:
        changed = ", ".join(f"{r.id}:{r.lifecycle.__struct_config__.tag}" for r in s.changed[:3])
        if len(s.changed) > 3:
            changed += f" (+{len(s.changed) - 3})"
        return self.line(
            (
                str(s.event.version),
                s.event.type,
                s.event.occurred_at.isoformat(timespec="milliseconds"),
                str(s.run.lifecycle.__struct_config__.tag),
                _counts(s.run),
                changed,
            )
        )


def _json_line(s: ReplayStep) -> bytes:
    event = s.event
    line: dict[str, Any] = {
        "version": event.version,
        "type": event.type,
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "recorded_at": event.recorded_at,
        "global_position": event.global_position,
        "data": event.event,
        "metadata": event.metadata,
        "state": s.run,
    }
    return _encode(line)


async def replay_run(dsn: str, run_id: str, *, as_json: bool, verify: bool) -> int:
    """Print a run's events and the state after each; with verify, compare the read model.

    Streams: the events are read a page at a time and each step is printed at
    once, so memory is the run's current state, whatever the stream's length.
    """
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        store = EventStore(pool)
        last_version = await store.stream_version(stream_of(run_id))
        if last_version == 0:
            print(f"run not found: {run_id}", file=sys.stderr)
            return 2
        replayed = Replay()
        out = sys.stdout.buffer
        table = _Table(last_version)
        if not as_json:
            out.write(table.head().encode() + b"\n")
        async for s in replayed.steps(store.iterate_stream(stream_of(run_id))):
            out.write(_json_line(s) if as_json else table.row(s).encode())
            out.write(b"\n")
        out.flush()
        events, results = replayed.events, replayed.results
        if not verify:
            return 0
        async with pool.acquire() as conn:
            stored = await readmodel.load(conn, run_id)
        problems: list[str] = []
        if stored is None:
            problems.append("no stored read model row")
        else:
            _, view = stored
            if view.version != replayed.version:
                problems.append(
                    f"run row reflects version {view.version}, stream is at {replayed.version}"
                )
            if view.run != replayed.run:
                problems.append("run resource differs from the fold")
            problems.extend(
                f"result {rid} differs from the fold"
                for rid in sorted(set(results) | set(view.results))
                if results.get(rid) != view.results.get(rid)
            )
        for problem in problems:
            print(f"verify: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"verify: read model matches the fold of {events} events", file=sys.stderr)
        return 0
    finally:
        await pool.close()


async def rebuild_projections(
    dsn: str, *, verify: bool, progress: bool, online: bool, jobs: int | None = None
) -> int:
    """Rebuild every read model; print the events/s reached."""
    pool = await db.create_pool(dsn, min_size=2, max_size=3)
    bar = tqdm(unit="ev", unit_scale=True, disable=not progress, file=sys.stderr, desc="rebuild")
    try:
        report = await rebuild(
            pool,
            verify=verify,
            online=online,
            on_progress=bar.update,
            on_total=lambda total: setattr(bar, "total", total),
            dsn=dsn,
            jobs=jobs,
        )
    except VerificationError as error:
        bar.close()
        _print_report(error.report)
        print(f"verify: FAILED, nothing swapped: {error.report.differences}", file=sys.stderr)
        return 1
    finally:
        await pool.close()
    bar.close()
    _print_report(report)
    if verify:
        print("verify: rebuilt rows equal the current ones", file=sys.stderr)
    return 0


def _print_report(report: RebuildReport) -> None:
    print(
        f"rebuilt {report.streams} runs from {report.events} events in {report.seconds:.2f}s"
        f" ({report.events_per_second:,.0f} events/s); caught up {report.caught_up_streams}"
        f" streams written meanwhile ({report.rounds} rounds before the lock, then"
        f" {report.locked_seconds * 1000:.0f} ms locked);"
        f" swapped: {'yes' if report.swapped else 'no'}"
    )


async def projections_status(dsn: str) -> int:
    """Print each async projection's checkpoint and lag (events it has yet to read)."""
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        rows = await asynchronous.status(pool)
    finally:
        await pool.close()
    print(f"{'projection':<24} {'checkpoint (xid, position)':<30} {'lag':>8}  updated")
    for row in rows:
        where = f"({row['transaction_id']}, {row['global_position']})"
        print(f"{row['name']!s:<24} {where:<30} {row['lag']!s:>8}  {row['updated_at']}")
    if not rows:
        print("(no async projection has run yet)")
    return 0


async def keys_command(
    dsn: str,
    action: str,
    *,
    organisation_id: str | None = None,
    new_organisation: str | None = None,
    name: str = "",
    key_id: str | None = None,
) -> int:
    """`keys create|list|revoke`: manage API keys (only their hashes are stored)."""
    from service.ops import keys  # noqa: PLC0415

    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            if action == "create":
                try:
                    key, created_id, organisation = await keys.create_key(
                        conn,
                        organisation_id=organisation_id,
                        new_organisation=new_organisation,
                        name=name,
                    )
                except LookupError as error:
                    print(str(error), file=sys.stderr)
                    return 2
                print(f"key {created_id} for organisation {organisation} (shown once):")
                print(key)
                return 0
            if action == "revoke":
                if key_id is None or not await keys.revoke_key(conn, key_id):
                    print(f"no valid key {key_id!r}", file=sys.stderr)
                    return 2
                print(f"revoked {key_id} (servers refuse it within KEY_CACHE_S, 1 s by default)")
                return 0
            for row in await keys.list_keys(conn):
                state = (
                    f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "valid"
                )
                print(
                    f"{row['id']}  {row['organisation_id']} ({row['organisation']})"
                    f"  {row['name'] or '-'}  created {row['created_at']:%Y-%m-%d %H:%M}  {state}"
                )
            return 0
    finally:
        await pool.close()
