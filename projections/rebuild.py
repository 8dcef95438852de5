"""Rebuild every read model from the events, into new tables, swapped in at once.

1. In one REPEATABLE READ snapshot, stream every event ordered by stream and
   version, fold each run, and COPY its rows into fresh tables created from
   `projections/schema.sql` in a side schema; their keys and indexes
   are made after the load.
2. In the swap transaction, lock `streams` against appenders (an append updates
   its stream's row, so it holds ROW EXCLUSIVE there until it commits: our
   SHARE ROW EXCLUSIVE waits for appends in flight and holds off new ones).
   Now no event can be in flight, so the events the snapshot did not see are
   exactly those its snapshot marks invisible: re-fold those streams.
3. Optionally compare the new rows with the current ones, then move the old
   tables out and the new ones in, in that same transaction.

Writers are held only during step 2-3, which touches only the streams written
since the snapshot. Readers see the old tables until the commit, then the new.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg

from events import codec, locks, reads
from events.connection import init_connection
from events.store import fetch_stream
from events.types import RunCreated, RunEvent
from projections import asynchronous
from projections.fold import step
from projections.readmodel import (
    QUEUE_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    queue_rows,
    result_row,
    run_row,
)
from projections.resources import TERMINAL, WorkflowTestResult, WorkflowTestRun
from projections.summaries import LatestRunSummaries

TABLES = ("test_runs", "test_results", "test_queue")
ASYNC_PROJECTIONS: tuple[asynchronous.AsyncProjection, ...] = (LatestRunSummaries(),)
# What --verify compares: every column of the projections, but not the
# runners' own state in the queue (leases, attempts). Rendered JSON compares as
# values (`json` has no equality, and a migrated row's spacing may differ).
_JSON_COLUMNS = {"resource", "task"}
_COMPARED = {
    table: ", ".join(f"{c}::jsonb" if c in _JSON_COLUMNS else c for c in columns)
    for table, columns in (
        ("test_runs", RUN_COLUMNS),
        ("test_results", RESULT_COLUMNS),
        ("test_queue", QUEUE_COLUMNS[:-1]),
    )
}
_BATCH = 2000
_ONLINE_ROUNDS = 5  # catch-up rounds before the lock, at most
_FEW_STREAMS = 20  # few enough streams left to catch up under the lock

# A process folding a range needs at least this many events to pay its start-up.
_EVENTS_PER_JOB = 200_000

# The runners' state is not in the events: keep each test's lease and attempts.
_CARRY_LEASES = """
UPDATE {side}.test_queue s
   SET available_at = l.available_at, attempts = l.attempts, lease_owner = l.lease_owner
  FROM {live}.test_queue l
 WHERE l.result_id = s.result_id
"""

# The side tables' keys, indexes and fillfactors, as statements that drop them for a
# bulk load and statements that restore them after.
_BULK_LOAD = """
SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop,
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
              pg_get_constraintdef(c.oid)) AS make
  FROM pg_constraint c
 WHERE c.connamespace = $1::regnamespace AND c.contype IN ('p', 'u')
UNION ALL
SELECT format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
 WHERE x.relnamespace = $1::regnamespace
   AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
UNION ALL
SELECT format('ALTER TABLE %s RESET (fillfactor)', t.oid::regclass),
       format('ALTER TABLE %s SET (%s)', t.oid::regclass, o.option)
  FROM pg_class t CROSS JOIN unnest(t.reloptions) AS o(option)
 WHERE t.relnamespace = $1::regnamespace AND t.relkind = 'r' AND o.option LIKE 'fillfactor=%'
"""

@dataclass
class RebuildReport:
    """What a rebuild did."""

    events: int = 0
    streams: int = 0
    caught_up_streams: int = 0
    seconds: float = 0.0
    differences: dict[str, int] = field(default_factory=dict)
    swapped: bool = False
    rounds: int = 0
    locked_seconds: float = 0.0
    jobs: int = 1

    @property
    def events_per_second(self) -> float:
        """Throughput of the whole rebuild."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class VerificationError(RuntimeError):
    """The rebuilt rows differ from the current ones; nothing was swapped."""

    def __init__(self, report: RebuildReport) -> None:
        super().__init__(f"rebuilt read models differ: {report.differences}")
        self.report = report


# In projections/schema.sql, the inline read models come before this line.
_ASYNC_MARKER = "-- @async-projections"


def declared_schema() -> str:
    """The DDL of every inline read model (TABLES), with unqualified names."""
    text = (resources.files("projections") / "schema.sql").read_text("utf-8")
    return text.split(_ASYNC_MARKER, 1)[0]


@dataclass
class StreamRows:
    """The read-model rows of one run."""

    run: tuple[Any, ...]
    results: list[tuple[Any, ...]]
    queue: list[tuple[Any, ...]]


# One event as the fold reads it: its version, payload and time.
Step = tuple[int, RunEvent, datetime]
# Streams from the first id (inclusive) to the second (exclusive); None: open.
StreamRange = tuple[str | None, str | None]


def rows_of_stream(events: Iterable[Step]) -> StreamRows | None:
    """Fold one run's stream into its `test_runs`, `test_results` and `test_queue` rows."""
    run: WorkflowTestRun | None = None
    results: dict[str, WorkflowTestResult] = {}
    created: RunCreated | None = None
    created_at = None
    placement: dict[str, tuple[int, str]] = {}
    result_versions: dict[str, int] = {}
    version = 0
    for version, event, at in events:
        if isinstance(event, RunCreated):
            created, created_at = event, at
            placement = {
                test.result_id: (index, test.validity_fingerprint)
                for index, test in enumerate(created.tests)
            }
        run, touched = step(run, results, event, at)
        for result in touched:
            results[result.id] = result
            result_versions[result.id] = version
    if run is None or created is None:
        return None
    organisation_id = created.organisation_id
    waiting = {rid for rid, result in results.items() if not isinstance(result.lifecycle, TERMINAL)}
    return StreamRows(
        run=run_row(organisation_id, run, version, created.workflow_revision),
        results=[
            result_row(organisation_id, result, result_versions[rid], *placement[rid])
            for rid, result in results.items()
        ],
        queue=[row for row in queue_rows(created, created_at) if row[0] in waiting]
        if waiting
        else [],
    )


async def _chunks(
    reader: asyncpg.Connection, streams: StreamRange
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """Every event row of a range of streams, ordered by stream and version, in
    chunks; the next chunk is fetched while the caller folds the current one."""
    cursor = await reads.events_of_streams(reader, *streams)
    ahead = asyncio.ensure_future(cursor.fetch(_BATCH))
    try:
        while rows := await ahead:
            ahead = asyncio.ensure_future(cursor.fetch(_BATCH))
            yield rows
    finally:
        if not ahead.done():
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ahead


async def _streams(
    chunks: AsyncIterator[list[asyncpg.Record]],
) -> AsyncIterator[list[Step]]:
    """Group ordered event rows (`events.reads.EVENTS_OF_STREAMS`) into one list of decoded
    steps per stream."""
    current: list[Step] = []
    stream = None
    decode = codec.decode
    async for rows in chunks:
        for stream_id, version, event_type, schema_version, data, at in rows:
            if stream_id != stream:
                if current:
                    yield current
                    current = []
                stream = stream_id
            current.append((version, decode(event_type, schema_version, data), at))
    if current:
        yield current


async def rebuild(
    pool: asyncpg.Pool,
    *,
    verify: bool = False,
    online: bool = False,
    on_progress: Callable[[int], object] | None = None,
    on_total: Callable[[int], object] | None = None,
    dsn: str | None = None,
    jobs: int | None = None,
) -> RebuildReport:
    """Rebuild every read model (TABLES) from the events and swap them in.

    Args:
        pool: the service's pool.
        verify: compare the rebuilt rows with the current ones first; on any
            difference raise VerificationError and swap nothing.
        online: before taking the lock, catch up in rounds (without blocking
            anyone) with what was written during the build, so that the final,
            locked catch-up has little left and writers wait only briefly.
        on_progress: called with the number of events folded since the last call.
        on_total: called once with the number of events to fold.
        dsn: where other processes can connect: with it, the streams are folded
            by `jobs` processes (this one and `jobs - 1` more), each a range of
            streams, all in the same snapshot.
        jobs: how many; by default one per core, with at least
            `_EVENTS_PER_JOB` events each.
    """
    report = RebuildReport()
    started = time.perf_counter()
    stamp = f"{int(time.time() * 1000)}"
    side = f"rebuild_{stamp}"
    async with pool.acquire() as reader, pool.acquire() as writer:
        live = await writer.fetchval("SELECT current_schema()")
        await writer.execute(f"CREATE SCHEMA {side}")
        try:
            async with writer.transaction():
                await writer.execute(f"SET LOCAL search_path TO {side}")
                await writer.execute(declared_schema())
            restore = await ready_for_bulk_load(writer, side)
            snapshot = await _build(
                reader,
                writer,
                side,
                report,
                on_progress=on_progress,
                on_total=on_total,
                dsn=dsn,
                jobs=jobs,
            )
            for statement in restore:
                await writer.execute(statement)
            while online and report.rounds < _ONLINE_ROUNDS:
                async with writer.transaction():
                    # The new snapshot first: the catch-up reads at least it.
                    fresh = await writer.fetchval("SELECT pg_current_snapshot()::text")
                    caught = await _catch_up(writer, side, snapshot)
                snapshot = fresh
                report.rounds += 1
                if caught <= _FEW_STREAMS:
                    break
            locked = time.perf_counter()
            await _swap(
                writer,
                live,
                side,
                retired=f"retired_{stamp}",
                snapshot=snapshot,
                report=report,
                verify=verify,
            )
            report.locked_seconds = time.perf_counter() - locked
        finally:
            await writer.execute(f"DROP SCHEMA IF EXISTS {side} CASCADE")
    # The async projections read the inline ones: replay them once those are in.
    for projection in ASYNC_PROJECTIONS:
        await asynchronous.rebuild(pool, projection)
    report.seconds = time.perf_counter() - started
    return report


async def ready_for_bulk_load(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Drop the keys, indexes and fillfactors of the side tables; return the statements
    that restore them.

    Bulk loading first and indexing after, as pg_restore does, halves
    PostgreSQL's work in a rebuild: one sort per index instead of an insertion
    per row. A rebuilt row is written once, so its pages are loaded full; the
    declared fillfactor, restored after, leaves room on the pages written later.
    """
    # Outside the side schema's search_path, so that every name comes qualified.
    rows = await conn.fetch(_BULK_LOAD, schema)
    for row in rows:
        await conn.execute(row["drop"])
    return [row["make"] for row in rows]


async def _build(
    reader: asyncpg.Connection,
    writer: asyncpg.Connection,
    side: str,
    report: RebuildReport,
    *,
    on_progress: Callable[[int], object] | None,
    on_total: Callable[[int], object] | None,
    dsn: str | None,
    jobs: int | None,
) -> str:
    """Fold every stream of one snapshot into the side tables; return that snapshot.

    With a DSN, ranges of streams go to other processes, which import this
    transaction's snapshot (`pg_export_snapshot`): every process reads the
    same events. This process folds the first range and keeps the snapshot's
    transaction open until every other one is done.
    """
    async with reader.transaction(isolation="repeatable_read", readonly=True):
        snapshot: str = await reader.fetchval("SELECT pg_current_snapshot()::text")
        streams = await reads.stream_lengths(reader)
        total = sum(row["version"] for row in streams)
        if on_total is not None:
            on_total(total)
        if dsn is None:
            jobs = 1  # nowhere for other processes to connect
        elif jobs is None:
            jobs = min(os.cpu_count() or 1, max(1, total // _EVENTS_PER_JOB))
        ranges = _ranges(streams, total, jobs)
        del streams
        report.jobs = len(ranges)
        if dsn is None or len(ranges) == 1:
            done = [await _fold(reader, writer, side, ranges[0], on_progress)]
        else:
            done = await _fold_in_processes(
                reader, writer, side, ranges, dsn=dsn, on_progress=on_progress
            )
        report.events = sum(events for events, _ in done)
        report.streams = sum(folded for _, folded in done)
    return snapshot


def _ranges(streams: Sequence[Mapping[str, Any]], total: int, jobs: int) -> list[StreamRange]:
    """Split the streams (ordered by id) into `jobs` ranges of about as many events."""
    bounds: list[str | None] = [None]
    upto = 0
    for row in streams:
        if upto >= total * len(bounds) / jobs and len(bounds) < jobs:
            bounds.append(row["stream_id"])
        upto += row["version"]
    bounds.append(None)
    return list(itertools.pairwise(bounds))


async def _fold_in_processes(
    reader: asyncpg.Connection,
    writer: asyncpg.Connection,
    side: str,
    ranges: list[StreamRange],
    *,
    dsn: str,
    on_progress: Callable[[int], object] | None,
) -> list[tuple[int, int]]:
    """Fold the first range here and the others in as many spawned processes, which
    import the reader's snapshot; return each range's events and streams folded."""
    exported = await reader.fetchval("SELECT pg_export_snapshot()")
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(ranges) - 1, mp_context=context) as executor:
        others = [
            loop.run_in_executor(executor, _fold_elsewhere, dsn, exported, side, bounds)
            for bounds in ranges[1:]
        ]
        try:
            done = [await _fold(reader, writer, side, ranges[0], on_progress)]
            for other in asyncio.as_completed(others):
                done.append(await other)
                if on_progress is not None:
                    on_progress(done[-1][0])
        except BaseException:
            for other in others:
                other.cancel()
            raise
    return done


def _fold_elsewhere(dsn: str, snapshot: str, side: str, streams: StreamRange) -> tuple[int, int]:
    """In another process: fold a range of streams in an exported snapshot."""

    async def fold() -> tuple[int, int]:
        reader = await asyncpg.connect(dsn)
        writer = await asyncpg.connect(dsn)
        try:
            await init_connection(reader)
            await init_connection(writer)
            async with reader.transaction(isolation="repeatable_read", readonly=True):
                await reader.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                return await _fold(reader, writer, side, streams, None)
        finally:
            await reader.close()
            await writer.close()

    return asyncio.run(fold())


async def _fold(
    reader: asyncpg.Connection,
    writer: asyncpg.Connection,
    side: str,
    streams: StreamRange,
    on_progress: Callable[[int], object] | None,
) -> tuple[int, int]:
    """Fold a range of streams into the side tables (in the reader's transaction);
    return the events and the streams folded."""
    events = folded = 0
    batch: list[StreamRows] = []
    pending = 0
    # One COPY in flight on the writer while the reader folds the next runs.
    copying: asyncio.Future[None] | None = None
    try:
        async with contextlib.aclosing(_chunks(reader, streams)) as chunks:
            async for stream in _streams(chunks):
                rows = rows_of_stream(stream)
                events += len(stream)
                folded += 1
                if rows is not None:
                    batch.append(rows)
                    pending += 1 + len(rows.results)
                if pending >= _BATCH:
                    if copying is not None:
                        await copying
                    copying = asyncio.ensure_future(_copy(writer, side, batch))
                    batch, pending = [], 0
                if on_progress is not None:
                    on_progress(len(stream))
        if copying is not None:
            await copying
        await _copy(writer, side, batch)
    finally:
        if copying is not None and not copying.done():
            copying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await copying
    return events, folded


async def _swap(
    writer: asyncpg.Connection,
    live: str,
    side: str,
    *,
    retired: str,
    snapshot: str,
    report: RebuildReport,
    verify: bool,
) -> None:
    """Under a short lock: the last catch-up, the optional comparison, the swap."""
    async with writer.transaction():
        # Lock order matters: the writers' lock first, which every command
        # takes (shared) before touching any table; then the streams, for
        # appends made outside the commands; then the queue, so that no claim
        # changes a lease while it is carried over.
        await writer.execute("SELECT pg_advisory_xact_lock($1)", locks.WRITERS)
        await reads.lock_streams_against_appends(writer, live)
        await writer.execute(f"LOCK TABLE {live}.test_queue IN EXCLUSIVE MODE")
        report.caught_up_streams = await _catch_up(writer, side, snapshot)
        await writer.execute(_CARRY_LEASES.format(live=live, side=side))
        if verify:
            report.differences = await _differences(writer, live, side)
            if any(report.differences.values()):
                raise VerificationError(report)
        await writer.execute(f"CREATE SCHEMA {retired}")
        for table in TABLES:
            await writer.execute(f"ALTER TABLE {live}.{table} SET SCHEMA {retired}")
            await writer.execute(f"ALTER TABLE {side}.{table} SET SCHEMA {live}")
        await writer.execute(f"DROP SCHEMA {retired} CASCADE")
        report.swapped = True


async def _copy(conn: asyncpg.Connection, schema: str, batch: list[StreamRows]) -> None:
    for table, columns, records in (
        ("test_runs", RUN_COLUMNS, [rows.run for rows in batch]),
        ("test_results", RESULT_COLUMNS, [r for rows in batch for r in rows.results]),
        ("test_queue", QUEUE_COLUMNS, [q for rows in batch for q in rows.queue]),
    ):
        if records:
            await conn.copy_records_to_table(
                table, records=records, columns=columns, schema_name=schema
            )


async def _catch_up(conn: asyncpg.Connection, schema: str, snapshot: str) -> int:
    """Re-fold, into the side tables, every stream written after the snapshot."""
    streams = await reads.streams_unseen_by(conn, snapshot)
    for stream_id in streams:
        events = await fetch_stream(conn, stream_id)
        rows = rows_of_stream((e.version, e.event, e.occurred_at) for e in events)
        if rows is None:
            continue
        run_id = rows.run[0]
        for table, column in (
            ("test_queue", "run_id"),
            ("test_results", "run_id"),
            ("test_runs", "id"),
        ):
            await conn.execute(f"DELETE FROM {schema}.{table} WHERE {column} = $1", run_id)
        await _copy(conn, schema, [rows])
    return len(streams)


async def _differences(conn: asyncpg.Connection, live: str, side: str) -> dict[str, int]:
    """Rows present on one side and not the other, per table (0 everywhere = identical)."""
    found: dict[str, int] = {}
    for table in TABLES:
        columns = _COMPARED[table]
        found[table] = await conn.fetchval(
            f"""
            SELECT (SELECT count(*) FROM (SELECT {columns} FROM {live}.{table}
                                          EXCEPT ALL SELECT {columns} FROM {side}.{table}) a)
                 + (SELECT count(*) FROM (SELECT {columns} FROM {side}.{table}
                                          EXCEPT ALL SELECT {columns} FROM {live}.{table}) b)
            """
        )
    return found
