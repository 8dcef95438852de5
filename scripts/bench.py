"""The benchmark behind scripts/bench: workloads measured several times, reported as medians.

Workloads:
  execution  one run of N no-op `function` tests through `python -m service serve`
             (the in-process runner): tests/s from the create request to the
             run's completion, and the server's peak resident memory.
  append1    16 writers on distinct streams, 1 event per transaction, through
  append10   EventStore.append with expected versions (10 events per transaction),
             inside the writer's transaction (conn=) and, a second row, on the
             store's own connection; reference: plain asyncpg INSERTs into a
             minimal events table.
  read       16 concurrent readers of 10-event streams cycling through 512 distinct
             streams (EventStore.read_stream, typed); reference: the same SELECT on
             the minimal table, each payload decoded by msgspec into the same event
             types. A second row: each reader rereading one stream.
  scan       every event of a history of real run streams, in commit order, decoded
             (EventStore.read_all, pages of 1,000); reference: an ordered keyset
             scan of the minimal table holding the same rows.
  rebuild    scripts/rebuild-projections (the subprocess, as a user runs it) on that
             history: events/s against the goal of 100,000, the in-process figure,
             and its peak RSS beside a rebuild of ten times fewer events.
  memory     peak RSS of scripts/replay-run on a long run stream and of
             scripts/export-events of the whole history, each beside the same
             command on ten times fewer events: flat = constant memory.
  http       GET of a run resource from the real server at 32 concurrent connections,
             from a separate load generator (wrk, else scripts/bench_http.py):
             requests/s, p50, p99; reference: a minimal aiohttp handler returning the
             same bytes with no database.
  peer       the eventsourcing library's PostgreSQL recorder (scripts/bench_peer.py)
             appending (1 and 10 per transaction) and reading a 10-event stream,
             beside our EventStore and the plain INSERTs of the same run.

The history (scripts/bench_history.py) is built once per invocation and shared by
scan, rebuild and memory; every database made is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_history
import bench_http
import bench_peer
import scratch

ROOT = Path(__file__).resolve().parents[1]
KEY = "rtk_bench_" + uuid.uuid4().hex


async def _admin_dsn() -> str:
    return await scratch.admin_dsn("bench-postgres")


class Database:
    """A fresh database for one measurement, dropped afterwards."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.dsn = scratch.with_database(admin, self.name)

    async def __aenter__(self) -> Database:
        await scratch.create_database(self.admin, self.name)
        return self

    async def __aexit__(self, *_: object) -> None:
        await scratch.drop_database(self.admin, self.name)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _seed_tests(dsn: str, count: int) -> str:
    """A workflow with a no-op function block and `count` saved tests; returns the workflow id."""
    from service.db import create_pool  # noqa: PLC0415
    from service.models import (  # noqa: PLC0415
        CreateBlockRequest,
        CreateTestRequest,
        CreateWorkflowRequest,
    )
    from service.ops import keys  # noqa: PLC0415
    from service.registry import store as registry  # noqa: PLC0415

    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await keys.bootstrap(pool, KEY)
        org = await pool.fetchval("SELECT id FROM organisations")
        workflow = await registry.create_workflow(pool, org, CreateWorkflowRequest(name="bench"))
        async with pool.acquire() as conn:
            block = await registry.create_block(
                conn,
                org,
                CreateBlockRequest(
                    workflow_id=workflow.id,
                    type="function",
                    config={"entrypoint": "tests.run_functions:noop"},
                ),
            )
            body = msgspec.convert(
                {
                    "workflow_id": workflow.id,
                    "target": {"block_id": block.id},
                    "source": {
                        "type": "manual",
                        "handle_inputs": {"in": {"type": "json", "data": 1}},
                    },
                    "assertion": {
                        "target": {"output_handle_id": "output-json-0"},
                        "condition": {"kind": "equals", "expected": True},
                    },
                },
                CreateTestRequest,
            )
            async with conn.transaction():
                for _ in range(count):
                    await registry.create_test(conn, org, body)
        return workflow.id
    finally:
        await pool.close()


def _start_server(dsn: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env={
            **os.environ,
            "DATABASE_URL": dsn,
            "PORT": str(port),
            "BOOTSTRAP_API_KEY": KEY,
            "LOG_LEVEL": "warning",
            "FUNCTION_MODULES": "tests.run_functions",
            "PYTHONPATH": str(ROOT),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_healthy(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    msg = "the server did not start"
    raise RuntimeError(msg)


async def execution_once(admin: str, tests: int) -> dict[str, float]:
    """One run of `tests` no-op function tests; tests/s and the server's peak RSS."""
    async with Database(admin) as database:
        workflow_id = await _seed_tests(database.dsn, tests)
        port = scratch.free_port()
        server = _start_server(database.dsn, port, {})  # the default runner settings
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {KEY}"}
        try:
            async with aiohttp.ClientSession(headers=headers) as session:
                await _wait_healthy(session, base)
                started = time.perf_counter()
                async with session.post(
                    f"{base}/v1/workflows/tests/runs", json={"workflow_id": workflow_id}
                ) as response:
                    run = await response.json()
                created = time.perf_counter() - started
                while True:
                    async with session.get(f"{base}/v1/workflows/tests/runs/{run['id']}") as got:
                        state = await got.json()
                    if state["lifecycle"]["status"] != "pending" and state["lifecycle"][
                        "status"
                    ] not in ("queued", "running"):
                        break
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - started
            rss = _peak_rss_mb(server.pid)
            passed = state["counts"]["passed"]
            if passed != tests:
                msg = f"expected {tests} passed tests, got {state['counts']}"
                raise RuntimeError(msg)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    executing = state["timing"]["duration_ms"] / 1000
    return {
        "tests_per_s": tests / elapsed,
        "executing_tests_per_s": tests / executing,
        "seconds": elapsed,
        "create_s": created,
        "peak_rss_mb": rss,
    }


_MINIMAL = """
CREATE TABLE bench_minimal (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    UNIQUE (stream_id, version)
)
"""
_PAYLOAD = msgspec.json.encode(
    {"type": "test.started", "result_id": "wfnodetestrun_x", "test_id": "wfnodetest_x",
     "attempt": 1, "worker": "bench"}
)  # fmt: skip
WRITERS = 16
# Turns each side takes in the append and read workloads (see _alternating).
TURNS = 8


async def _store_pool(dsn: str, size: int = WRITERS) -> asyncpg.Pool:
    from service.db import create_pool  # noqa: PLC0415

    pool = await create_pool(dsn, min_size=size, max_size=size)
    await pool.execute(_MINIMAL)
    return pool


async def _alternating(
    sides: dict[str, Callable[[int], Awaitable[None]]], turns: int = TURNS
) -> dict[str, float]:
    """Seconds each side spent, taking turns A B B A ...: 16 workers at a time.

    Each call of a side does 1/turns of its work. On a shared machine the speed
    drifts within seconds; alternating short turns puts the drift on both sides.
    """
    spent = dict.fromkeys(sides, 0.0)
    for turn in range(turns):
        order = list(sides.items())
        for name, side in order if turn % 2 == 0 else reversed(order):
            started = time.perf_counter()
            await asyncio.gather(*(side(worker) for worker in range(WRITERS)))
            spent[name] += time.perf_counter() - started
    return spent


async def append_once(admin: str, per_transaction: int, total: int) -> dict[str, float]:
    """16 writers, `per_transaction` events per append, events/s: ours through `conn=`
    ("ours"), ours on the store's own connection ("own") and plain INSERTs."""
    from events.store import EventStore  # noqa: PLC0415
    from events.types import NewEvent, TestStarted  # noqa: PLC0415

    each = total // WRITERS // per_transaction // TURNS
    async with Database(admin) as database:
        pool = await _store_pool(database.dsn)
        store = EventStore(pool)
        ours_at = [0] * WRITERS
        own_at = [0] * WRITERS
        reference_at = [0] * WRITERS
        try:

            async def ours(writer: int) -> None:
                # The reference's pattern: a connection per writer, each append its
                # own transaction; plus the wake-up each append sends after commit.
                async with pool.acquire() as conn:
                    for _ in range(each):
                        events = [
                            NewEvent(event=TestStarted(result_id="r", test_id="t", worker="bench"))
                            for _ in range(per_transaction)
                        ]
                        await store.append(f"run-w{writer}", events, ours_at[writer], conn=conn)
                        store.announce(f"run-w{writer}")
                        ours_at[writer] += per_transaction

            async def own(writer: int) -> None:
                # The way a library user calls it: no connection of one's own, the
                # store takes one from its pool for each append (and announces it).
                for _ in range(each):
                    events = [
                        NewEvent(event=TestStarted(result_id="r", test_id="t", worker="bench"))
                        for _ in range(per_transaction)
                    ]
                    await store.append(f"run-o{writer}", events, own_at[writer])
                    own_at[writer] += per_transaction

            async def reference(writer: int) -> None:
                sql = (
                    "INSERT INTO bench_minimal (stream_id, version, type, data)"
                    " VALUES ($1, $2, $3, $4)"
                )
                async with pool.acquire() as conn:
                    for _ in range(each):
                        version = reference_at[writer]
                        rows = [
                            (f"w{writer}", version + i + 1, "test.started", _PAYLOAD)
                            for i in range(per_transaction)
                        ]
                        if per_transaction == 1:
                            await conn.execute(sql, *rows[0])
                        else:
                            await conn.executemany(sql, rows)
                        reference_at[writer] += per_transaction

            spent = await _alternating({"reference": reference, "ours": ours, "own": own})
        finally:
            await pool.close()
    done = each * TURNS * per_transaction * WRITERS
    return {name: done / seconds for name, seconds in spent.items()}


# The read workload's streams: more than its readers ever reread, with more
# distinct timestamps (11 a stream) than the store's timestamp memo keeps.
READ_STREAMS = 512


async def _seed_read_streams(pool: asyncpg.Pool, streams: int) -> None:
    """`streams` 10-event streams, ours and the minimal table's, each written by its own
    append, every event with its own occurred_at (as runs write them)."""
    base = datetime.now(UTC)
    for stream in range(streams):
        await pool.execute(
            "SELECT * FROM append_events($1, 0, $2, $3, $4, $5, $6, $7)",
            f"run-r{stream}",
            [uuid.uuid4() for _ in range(10)],
            ["test.started"] * 10,
            [2] * 10,
            [_PAYLOAD] * 10,
            [b"{}"] * 10,
            [base + timedelta(milliseconds=stream * 10 + v) for v in range(10)],
        )
    await pool.executemany(
        "INSERT INTO bench_minimal (stream_id, version, type, data)"
        " VALUES ($1, $2, 'test.started', $3)",
        [(f"r{stream}", v, _PAYLOAD) for stream in range(streams) for v in range(1, 11)],
    )


async def read_once(admin: str, reads: int) -> dict[str, float]:
    """16 readers of 10-event streams, reads/s: ours (typed events) and the plain SELECT
    whose payloads msgspec decodes into the same event types.

    "ours"/"reference": the readers cycle through `READ_STREAMS` distinct streams
    (reader r reads r, r + 16, r + 32, ...), as users read runs. "ours_reread" /
    "reference_reread": each reader rereads one stream of its own (16 in all),
    which every cache of the client and the server favours. "floor": plain
    asyncpg fetching our ten envelope columns, payloads decoded, nothing built.
    """
    from events.store import _READ_STREAM, EventStore  # noqa: PLC0415
    from events.types import RunEvent  # noqa: PLC0415

    decode = msgspec.json.Decoder(RunEvent).decode
    sql = (
        "SELECT global_position, stream_id, version, type, data FROM bench_minimal"
        " WHERE stream_id = $1 ORDER BY version"
    )
    async with Database(admin) as database:
        pool = await _store_pool(database.dsn)
        store = EventStore(pool)
        try:
            await _seed_read_streams(pool, READ_STREAMS)
            each = reads // WRITERS // TURNS
            next_of = {side: list(range(WRITERS)) for side in ("ours", "reference", "floor")}

            def streams(side: str, reader: int) -> Iterator[int]:
                for _ in range(each):
                    stream = next_of[side][reader]
                    next_of[side][reader] = (stream + WRITERS) % READ_STREAMS
                    yield stream

            async def ours(reader: int) -> None:
                # The reference's pattern: a connection per reader.
                async with pool.acquire() as conn:
                    for stream in streams("ours", reader):
                        events = await store.read_stream(f"run-r{stream}", conn=conn)
                        assert len(events) == 10  # noqa: S101

            async def reference(reader: int) -> None:
                async with pool.acquire() as conn:
                    for stream in streams("reference", reader):
                        rows = await conn.fetch(sql, f"r{stream}")
                        events = [decode(row[4]) for row in rows]
                        assert len(events) == 10  # noqa: S101

            async def floor(reader: int) -> None:
                # Plain asyncpg fetching what our envelope holds (ten columns of
                # our table), decoding only the payloads: any store's least cost.
                async with pool.acquire() as conn:
                    for stream in streams("floor", reader):
                        rows = await conn.fetch(_READ_STREAM, f"run-r{stream}", 0)
                        events = [decode(row[6]) for row in rows]
                        assert len(events) == 10  # noqa: S101

            async def ours_reread(reader: int) -> None:
                async with pool.acquire() as conn:
                    for _ in range(each):
                        events = await store.read_stream(f"run-r{reader}", conn=conn)
                        assert len(events) == 10  # noqa: S101

            async def reference_reread(reader: int) -> None:
                async with pool.acquire() as conn:
                    for _ in range(each):
                        rows = await conn.fetch(sql, f"r{reader}")
                        events = [decode(row[4]) for row in rows]
                        assert len(events) == 10  # noqa: S101

            spent = await _alternating(
                {
                    "reference": reference,
                    "ours": ours,
                    "floor": floor,
                    "reference_reread": reference_reread,
                    "ours_reread": ours_reread,
                }
            )
        finally:
            await pool.close()
    return {name: each * TURNS * WRITERS / seconds for name, seconds in spent.items()}


async def _wait_final(conn: asyncpg.Connection) -> None:
    """Wait until read_all sees every event: no transaction older than them still runs.

    The horizon is the cluster's oldest running transaction (see read_all): a
    long transaction in another database of the server holds it back.
    """
    deadline = time.monotonic() + 120
    while not await conn.fetchval(
        "SELECT max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()) FROM events"
    ):
        if time.monotonic() > deadline:
            msg = "a transaction of the server stays open: read_all cannot see the history"
            raise RuntimeError(msg)
        await asyncio.sleep(0.5)


def long_run(events: int) -> int:
    """The tests of a history's long run: 10,000 in 1,000,000 events (2 events per test).

    As many tests as the execution workload's run.
    """
    return max(10, events // 100)


class Histories:
    """Histories of real run streams, built once per invocation and shared (see bench_history)."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.built: dict[tuple[int, int], tuple[Database, bench_history.History]] = {}
        self.minimal: set[int] = set()

    async def get(
        self, events: int, long_run_tests: int | None = None
    ) -> tuple[Database, bench_history.History]:
        """The database holding about `events` events, with a run of `long_run_tests` tests.

        By default the long run is `long_run(events)` tests long; another run
        has a tenth of its tests.
        """
        tests = long_run_tests if long_run_tests is not None else long_run(events)
        if (events, tests) not in self.built:
            from events.connection import init_connection  # noqa: PLC0415

            database = await Database(self.admin).__aenter__()
            started = time.perf_counter()
            try:
                conn = await asyncpg.connect(database.dsn)
                try:
                    await init_connection(conn)
                    history = await bench_history.build(conn, events, tests)
                    await conn.execute("VACUUM ANALYZE events")
                    await conn.execute("VACUUM ANALYZE streams")
                    await _wait_final(conn)
                finally:
                    await conn.close()
            except BaseException:
                await database.__aexit__()
                raise
            print(
                f"history: {history.events:,} events in {history.runs:,} runs,"
                f" built in {time.perf_counter() - started:.1f}s",
                file=sys.stderr,
            )
            self.built[events, tests] = (database, history)
        return self.built[events, tests]

    async def with_minimal(self, events: int) -> tuple[Database, bench_history.History]:
        """The history, plus the same rows in the minimal table (the scan's reference)."""
        database, history = await self.get(events)
        if events not in self.minimal:
            conn = await asyncpg.connect(database.dsn)
            try:
                await conn.execute(_MINIMAL)
                await conn.execute(
                    "INSERT INTO bench_minimal (stream_id, version, type, data)"
                    " SELECT stream_id, version, type, data FROM events ORDER BY global_position"
                )
                await conn.execute("VACUUM ANALYZE bench_minimal")
            finally:
                await conn.close()
            self.minimal.add(events)
        return database, history

    async def drop(self) -> None:
        """Drop every history database."""
        for database, _ in self.built.values():
            await database.__aexit__()
        self.built.clear()


async def scan_once(histories: Histories, events: int) -> dict[str, float]:
    """Every event in commit order: iterate_all (read_all's pages) decoded, and a plain
    keyset scan in pages of 1,000, events/s."""
    from events.store import ORIGIN, EventStore  # noqa: PLC0415
    from service.db import create_pool  # noqa: PLC0415

    database, history = await histories.with_minimal(events)
    pool = await create_pool(database.dsn, min_size=2, max_size=2)
    store = EventStore(pool)
    try:
        timings = {}
        started = time.perf_counter()
        last, seen = 0, 0
        async with pool.acquire() as conn:
            while True:
                rows = await conn.fetch(
                    "SELECT global_position, stream_id, version, type, data FROM bench_minimal"
                    " WHERE global_position > $1 ORDER BY global_position LIMIT 1000",
                    last,
                )
                if not rows:
                    break
                seen += len(rows)
                last = rows[-1]["global_position"]
        timings["reference"] = seen / (time.perf_counter() - started)
        started = time.perf_counter()
        seen = 0
        async for _ in store.iterate_all(ORIGIN, 1000):  # read_all page by page, read ahead
            seen += 1
        timings["ours"] = seen / (time.perf_counter() - started)
        if seen != history.events:
            msg = f"read_all returned {seen} of {history.events} events"
            raise RuntimeError(msg)
    finally:
        await pool.close()
    return timings


def _measured(
    command: list[str], dsn: str, stdout: Path | None = None
) -> tuple[float, float, str, str]:
    """Run a command to its end: wall seconds, its peak RSS (MB), stdout and stderr.

    Not `wait4`'s `ru_maxrss`: a child forked from this (large) process starts
    with this process's pages counted, and exec keeps that high-water mark. So
    the peak comes from GNU time (`/usr/bin/time -f %M`, itself small) when
    installed, else from polling the child's VmHWM (per address space, so after
    the scripts exec Python it is Python's own peak).
    """
    time_binary = Path("/usr/bin/time")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = stdout or Path(tmp) / "stdout"
        err_path = Path(tmp) / "stderr"
        rss_path = Path(tmp) / "rss"
        if time_binary.exists():
            command = [str(time_binary), "-f", "%M", "-o", str(rss_path), *command]
        peak_kb = 0
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            child = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": dsn, "LOG_LEVEL": "warning"},
                stdout=out,
                stderr=err,
            )
            while child.poll() is None:
                if not time_binary.exists():
                    peak_kb = max(peak_kb, _hwm_kb(child.pid))
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
        if time_binary.exists():
            peak_kb = int(rss_path.read_text().split()[-1])
        text = out_path.read_text(errors="replace") if stdout is None else ""
        errors = err_path.read_text(errors="replace")
    if child.returncode != 0:
        msg = f"{' '.join(command)} exited {child.returncode}: {errors[-2000:]}"
        raise RuntimeError(msg)
    return elapsed, peak_kb / 1024, text, errors


def _hwm_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def _server_cpu_s(data_directory: str) -> float | None:
    """CPU seconds used so far by a local PostgreSQL: the postmaster, its live
    processes, and the backends that exited (counted into the postmaster's
    children time). None when the server is not on this machine or not readable."""
    try:
        postmaster = int(Path(data_directory, "postmaster.pid").read_text().split()[0])
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, parent = int(stat.parent.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif parent == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def rebuild_floor(dsn: str, data_directory: str, events: int) -> dict[str, float]:
    """The least CPU per event that rebuilding these read models takes, without the fold.

    Run on a rebuilt history, it does everything the rebuild does but fold:
    reads the events as the rebuild reads them and decodes every payload into
    its typed event; encodes every rebuilt resource (the JSON a GET serves, as
    `projections.readmodel` does); and loads the rebuilt rows (binary COPY from
    files, written beforehand and not counted) into unindexed copies of the
    read models, then builds their keys and indexes. PostgreSQL's CPU and this
    process's, per event of the history: no rebuild of these rows can use less.
    """
    from events import codec, reads  # noqa: PLC0415
    from events.connection import init_connection  # noqa: PLC0415
    from projections import rebuild  # noqa: PLC0415
    from projections.resources import WorkflowTestResult, WorkflowTestRun  # noqa: PLC0415

    spent = {"server": 0.0, "client": 0.0}

    @contextlib.contextmanager
    def counted(server: bool = True) -> Iterator[None]:
        server_at, client_at = _server_cpu_s(data_directory), time.process_time()
        yield
        spent["client"] += time.process_time() - client_at
        server_now = _server_cpu_s(data_directory)
        if server and server_at is not None and server_now is not None:
            spent["server"] += server_now - server_at
        elif server:
            spent["server"] = math.nan

    encode = msgspec.json.Encoder().encode
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        with counted():
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                cursor = await reads.events_of_streams(conn, None, None)
                while page := await cursor.fetch(2000):
                    for _, _, event_type, schema_version, data, _ in page:
                        codec.decode(event_type, schema_version, data)
        for table, cls in (("test_runs", WorkflowTestRun), ("test_results", WorkflowTestResult)):
            decode = msgspec.json.Decoder(cls).decode
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                cursor = await conn.cursor(f"SELECT resource FROM {table}")
                while page := await cursor.fetch(2000):
                    resources = [decode(row[0]) for row in page]
                    with counted(server=False):
                        for one in resources:
                            encode(one)
        with tempfile.TemporaryDirectory() as tmp:
            for table in rebuild.TABLES:
                await conn.copy_from_table(table, output=f"{tmp}/{table}", format="binary")
            await conn.execute("CREATE SCHEMA bench_floor")
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL search_path TO bench_floor")
                    await conn.execute(rebuild.declared_schema())
                restore = await rebuild.ready_for_bulk_load(conn, "bench_floor")
                with counted():
                    for table in rebuild.TABLES:
                        await conn.copy_to_table(
                            table,
                            source=f"{tmp}/{table}",
                            format="binary",
                            schema_name="bench_floor",
                        )
                    for statement in restore:
                        await conn.execute(statement)
            finally:
                await conn.execute("DROP SCHEMA bench_floor CASCADE")
    finally:
        await conn.close()
    return {
        "floor_server_us": spent["server"] / events * 1e6,
        "floor_client_us": spent["client"] / events * 1e6,
    }


async def rebuild_once(histories: Histories, events: int) -> dict[str, float]:
    """scripts/rebuild-projections on the history: events/s of the subprocess and in-process,
    and the CPU time it and PostgreSQL used (what bounds it on this machine's cores)."""
    database, history = await histories.get(events)
    conn = await asyncpg.connect(database.dsn)
    try:
        data_directory = await conn.fetchval("SHOW data_directory")
    finally:
        await conn.close()
    server_before, client_before = _server_cpu_s(data_directory), _children_cpu_s()
    elapsed, rss, out, _ = await asyncio.to_thread(
        _measured, [str(ROOT / "scripts" / "rebuild-projections"), "--no-progress"], database.dsn
    )
    server_after, client_cpu = _server_cpu_s(data_directory), _children_cpu_s() - client_before
    found = re.search(r"from (\d+) events in [\d.]+s \(([\d,]+) events/s\)", out)
    if found is None or int(found.group(1)) != history.events:
        msg = f"unexpected rebuild output: {out}"
        raise RuntimeError(msg)
    conn = await asyncpg.connect(database.dsn)
    try:
        completed = await conn.fetchval("SELECT count(*) FROM test_runs WHERE status = 'completed'")
    finally:
        await conn.close()
    if completed != history.runs:
        msg = f"the rebuild made {completed} completed runs of {history.runs}"
        raise RuntimeError(msg)
    # Constant memory: the same rebuild on a tenth of the events, with as long a run.
    small_db, _ = await histories.get(events // 10, long_run(events))
    _, small_rss, _, _ = await asyncio.to_thread(
        _measured, [str(ROOT / "scripts" / "rebuild-projections"), "--no-progress"], small_db.dsn
    )
    server_cpu = (
        server_after - server_before
        if server_after is not None and server_before is not None
        else float("nan")
    )
    return {
        "ours": history.events / elapsed,
        "in_process": float(found.group(2).replace(",", "")),
        "seconds": elapsed,
        "server_us": server_cpu / history.events * 1e6,
        "client_us": client_cpu / history.events * 1e6,
        "rebuild_large": rss,
        "rebuild_small": small_rss,
        **await rebuild_floor(database.dsn, data_directory, history.events),
    }


async def memory_once(histories: Histories, events: int) -> dict[str, float]:
    """Peak RSS (MB) of replay-run and export-events, on N and N/10 events.

    replay-run: the history's long run, and its run of a tenth of the tests.
    export-events: the history, and one of a tenth of the events (the rebuild
    workload measures its own peak the same way).
    """
    scripts = ROOT / "scripts"
    large_db, large = await histories.get(events)
    small_db, _ = await histories.get(events // 10, long_run(events))
    sample: dict[str, float] = {}
    for label, run_id, expected in (
        ("replay_large", large.big_run, large.big_run_events),
        ("replay_small", large.small_run, large.small_run_events),
    ):
        _, rss, out, _ = await asyncio.to_thread(
            _measured, [str(scripts / "replay-run"), run_id], large_db.dsn
        )
        if len(out.splitlines()) != expected + 2:  # a header and a rule, then one per event
            msg = f"replay-run printed {len(out.splitlines())} lines for {expected} events"
            raise RuntimeError(msg)
        sample[label] = rss
    for label, database in (("export_large", large_db), ("export_small", small_db)):
        _, rss, _, errors = await asyncio.to_thread(
            _measured, [str(scripts / "export-events")], database.dsn, Path(os.devnull)
        )
        if "exported" not in errors:
            msg = f"export-events said: {errors[-500:]}"
            raise RuntimeError(msg)
        sample[label] = rss
    return sample


async def _one_completed_run(admin: str, database: Database) -> str:
    """A run of 10 no-op function tests, executed by a real server; returns its id."""
    workflow_id = await _seed_tests(database.dsn, 10)
    port = scratch.free_port()
    server = _start_server(database.dsn, port, {})
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
            await _wait_healthy(session, base)
            async with session.post(
                f"{base}/v1/workflows/tests/runs", json={"workflow_id": workflow_id}
            ) as response:
                run_id: str = (await response.json())["id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with session.get(f"{base}/v1/workflows/tests/runs/{run_id}") as got:
                    state = await got.json()
                if state["lifecycle"]["status"] == "completed":
                    return run_id
                await asyncio.sleep(0.05)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    msg = "the run did not complete"
    raise RuntimeError(msg)


def _start_minimal(
    port: int, body: Path, content_type: str, dsn: str | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_http.py"),
            "minimal",
            str(port),
            str(body),
            content_type,
            *([dsn] if dsn else []),
        ]
    )


async def http_once(admin: str, seconds: float) -> dict[str, float]:
    """GET a completed run from the real server, and the same bytes from a minimal handler."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with Database(admin) as database:
        run_id = await _one_completed_run(admin, database)
        port, minimal_port, floor_port = (scratch.free_port() for _ in range(3))
        server = _start_server(database.dsn, port, {"RUNNER_ENABLED": "false"})
        minimal: subprocess.Popen[bytes] | None = None
        floor: subprocess.Popen[bytes] | None = None
        url = f"http://127.0.0.1:{port}/v1/workflows/tests/runs/{run_id}"
        reference_url = f"http://127.0.0.1:{minimal_port}/ref"
        floor_url = f"http://127.0.0.1:{floor_port}/ref"
        with tempfile.TemporaryDirectory() as tmp:
            try:
                async with aiohttp.ClientSession(headers=headers) as session:
                    await _wait_healthy(session, f"http://127.0.0.1:{port}")
                    async with session.get(url) as response:
                        body = await response.read()
                        content_type = response.headers["Content-Type"]
                    (Path(tmp) / "body").write_bytes(body)
                    minimal = _start_minimal(minimal_port, Path(tmp) / "body", content_type)
                    floor = _start_minimal(
                        floor_port, Path(tmp) / "body", content_type, database.dsn
                    )
                    for target in (reference_url, floor_url):
                        deadline = time.monotonic() + 30
                        while True:
                            try:
                                async with session.get(target) as response:
                                    same = await response.read() == body
                                    same = same and response.headers["Content-Type"] == content_type
                                    break
                            except aiohttp.ClientError:
                                if time.monotonic() > deadline:
                                    raise
                                await asyncio.sleep(0.1)
                        if not same:
                            msg = "the minimal handler does not return the same response"
                            raise RuntimeError(msg)
                sample: dict[str, float] = {"body_bytes": len(body)}
                for name, target in (
                    ("reference", reference_url),
                    ("floor", floor_url),
                    ("ours", url),
                ):
                    await asyncio.to_thread(bench_http.measure, target, 1, 32, headers)  # warm-up
                    result = await asyncio.to_thread(
                        bench_http.measure, target, seconds, 32, headers
                    )
                    if result["errors"]:
                        msg = f"{name}: {result['errors']:.0f} failed requests"
                        raise RuntimeError(msg)
                    sample[name] = result["requests_per_s"]
                    sample[f"{name}_p50_ms"] = result["p50_ms"]
                    sample[f"{name}_p99_ms"] = result["p99_ms"]
                    sample["wrk"] = result["wrk"]
            finally:
                for process in (server, minimal, floor):
                    if process is not None:
                        process.send_signal(signal.SIGTERM)
                        process.wait(timeout=60)
    return sample


async def peer_once(
    admin: str, sizes: dict[str, int], earlier: dict[str, dict[str, float]]
) -> dict[str, float]:
    """The eventsourcing recorder beside our store and the plain INSERTs, in each pattern.

    Ours and the plain INSERTs are taken from `earlier` (the append1, append10
    and read samples of this invocation, same sizes) when there, else measured.
    """
    try:
        import eventsourcing.postgres  # noqa: F401, PLC0415
    except ImportError as error:
        msg = "the peer workload needs the bench extra: pip install -e '.[bench]'"
        raise RuntimeError(msg) from error
    sample: dict[str, float] = {}
    for label, per_transaction in (("append1", 1), ("append10", 10)):
        total = sizes[label]
        ours = earlier.get(label) or await append_once(admin, per_transaction, total)
        async with Database(admin) as database:
            peer = await asyncio.to_thread(
                bench_peer.append, database.dsn, per_transaction, total, _PAYLOAD
            )
        sample |= {f"{label}_ours": ours["ours"], f"{label}_reference": ours["reference"]}
        sample[f"{label}_peer"] = peer
    reads = sizes["read"]
    ours = earlier.get("read") or await read_once(admin, reads)
    async with Database(admin) as database:
        peer = await asyncio.to_thread(bench_peer.read, database.dsn, reads, _PAYLOAD)
    sample |= {"read_ours": ours["ours"], "read_reference": ours["reference"], "read_peer": peer}
    return sample


def _summary(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):,.{digits}f}"
        f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    )


def _column(samples: list[dict[str, float]], key: str) -> list[float]:
    return [sample[key] for sample in samples]


def _ratio(samples: list[dict[str, float]], top: str, bottom: str) -> float:
    return statistics.median(s[top] / s[bottom] for s in samples)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return ""
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
    return f" ({found.group(1).strip()})" if found else ""


async def _machine(admin: str) -> str:
    conn = await asyncpg.connect(admin)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores{_cpu_model()};"
        f" PostgreSQL {version}; Python {platform.python_version()}"
    )


def _rebuild_cpu_rows(samples: list[dict[str, float]]) -> list[tuple[str, str, str, str]]:
    """What bounds a rebuild: CPU per event, PostgreSQL's and the script's, on this many cores."""
    cores = os.cpu_count() or 1
    server, client = _column(samples, "server_us"), _column(samples, "client_us")
    budget = f"{cores} cores / 100,000 events/s = {cores * 10} µs per event for both"
    rows = [
        (
            "rebuild: the script's CPU per event (µs: start-up, decode, fold, encode, COPY)",
            _summary(client, 1),
            budget,
            f"alone: at most {cores / statistics.median(client) * 1e6:,.0f} events/s",
        )
    ]
    if not any(math.isnan(value) for value in server):
        both = statistics.median(client) + statistics.median(server)
        rows.append(
            (
                "rebuild: PostgreSQL's CPU per event (µs: all its processes, during the rebuild)",
                _summary(server, 1),
                budget,
                f"alone: at most {cores / statistics.median(server) * 1e6:,.0f} events/s;"
                f" with the script's: {cores / both * 1e6:,.0f} events/s",
            )
        )
    floor_server, floor_client = (
        _column(samples, "floor_server_us"),
        _column(samples, "floor_client_us"),
    )
    rows.append(
        (
            "rebuild floor: the same rows without the fold, the client's CPU per event"
            " (µs: read and decode the events, encode the resources, COPY)",
            _summary(floor_client, 1),
            budget,
            f"{statistics.median(floor_client) / statistics.median(client):.2f}x the script's",
        )
    )
    if not any(math.isnan(value) for value in floor_server + server):
        least = statistics.median(floor_client) + statistics.median(floor_server)
        rows.append(
            (
                "rebuild floor: PostgreSQL's CPU per event for them (µs: read the events,"
                " load the rows, build the indexes)",
                _summary(floor_server, 1),
                budget,
                f"{statistics.median(floor_server) / statistics.median(server):.2f}x"
                f" the rebuild's; the floor allows at most {cores / least * 1e6:,.0f} events/s",
            )
        )
    return rows


def _rows(
    name: str, samples: list[dict[str, float]], sizes: dict[str, int]
) -> list[tuple[str, str, str, str]]:
    """The table rows of one workload's samples."""
    rows: list[tuple[str, str, str, str]] = []
    labels = {
        "append1": ("append: 16 writers, 1 event per transaction, conn= (events/s)", 0.6),
        "append10": ("append: 16 writers, 10 events per transaction, conn= (events/s)", 0.6),
        "read": (
            f"read a 10-event stream, 16 concurrent, {READ_STREAMS} distinct streams,"
            " payloads decoded on both sides (reads/s)",
            0.8,
        ),
        "scan": (f"commit-order scan of {sizes['history']:,} events, decoded (events/s)", 0.5),
    }
    if name in labels:
        label, goal = labels[name]
        rows.append(
            (
                label,
                _summary(_column(samples, "ours")),
                _summary(_column(samples, "reference")) + " (plain asyncpg)",
                f"{_ratio(samples, 'ours', 'reference'):.2f}x (goal ≥ {goal}x)",
            )
        )
    if name in ("append1", "append10"):
        rows.append(
            (
                label.replace("conn=", "on the store's own connection, no conn="),
                _summary(_column(samples, "own")),
                _summary(_column(samples, "reference")) + " (plain asyncpg)",
                f"{_ratio(samples, 'own', 'reference'):.2f}x (goal ≥ 0.6x)",
            )
        )
    if name == "read":
        rows.append(
            (
                "read floor: plain asyncpg fetching the envelope's ten columns from our table,"
                " payloads decoded, no envelope built (reads/s)",
                _summary(_column(samples, "floor")),
                _summary(_column(samples, "reference")) + " (plain asyncpg, decoded)",
                f"{_ratio(samples, 'floor', 'reference'):.2f}x (ours:"
                f" {_ratio(samples, 'ours', 'floor'):.2f}x the floor)",
            )
        )
        rows.append(
            (
                "reread: each reader the same 10-event stream again, 16 streams (reads/s)",
                _summary(_column(samples, "ours_reread")),
                _summary(_column(samples, "reference_reread")) + " (plain asyncpg, decoded)",
                f"{_ratio(samples, 'ours_reread', 'reference_reread'):.2f}x (for comparison)",
            )
        )
    if name == "rebuild":
        rate = _column(samples, "ours")
        rows.append(
            (
                f"rebuild: scripts/rebuild-projections on {sizes['history']:,} events, as a"
                " subprocess, start to exit (events/s)",
                _summary(rate),
                "goal ≥ 100,000",
                f"{statistics.median(rate) / 100_000:.2f}x goal",
            )
        )
        in_process = _column(samples, "in_process")
        rows.append(
            (
                "rebuild: the same, as the script reports it (in-process, events/s)",
                _summary(in_process),
                "goal ≥ 100,000",
                f"{statistics.median(in_process) / 100_000:.2f}x goal",
            )
        )
        rows.extend(_rebuild_cpu_rows(samples))
    history, runs = sizes["history"], sizes["replay"]
    memory = {
        "memory": (
            ("replay", "scripts/replay-run", f"a run of {runs:,} tests", f"{runs // 10:,}"),
            ("export", "scripts/export-events", f"{history:,} events", f"{history // 10:,}"),
        ),
        "rebuild": (
            ("rebuild", "scripts/rebuild-projections", f"{history:,} events", f"{history // 10:,}"),
        ),
    }
    if name in memory:
        for key, label, large, small in memory[name]:
            rows.append(
                (
                    f"memory: {label} peak RSS on {large} (MB)",
                    _summary(_column(samples, f"{key}_large")),
                    _summary(_column(samples, f"{key}_small")) + f" on {small}",
                    f"{_ratio(samples, f'{key}_large', f'{key}_small'):.2f}x (constant ≈ 1x)",
                )
            )
    if name == "http":
        tool = "wrk" if samples[0]["wrk"] else "aiohttp load generator"
        rows.append(
            (
                f"http: GET a run ({samples[0]['body_bytes']:,.0f} bytes), 32 connections,"
                f" {tool} (requests/s)",
                _summary(_column(samples, "ours")),
                _summary(_column(samples, "reference")) + " (minimal aiohttp handler)",
                f"{_ratio(samples, 'ours', 'reference'):.2f}x (goal ≥ 0.5x)",
            )
        )
        rows.append(
            (
                "http: the floor, the same minimal handler plus one `SELECT 1` through an"
                " asyncpg pool (requests/s)",
                _summary(_column(samples, "floor")),
                _summary(_column(samples, "reference")) + " (minimal aiohttp handler)",
                f"{_ratio(samples, 'floor', 'reference'):.2f}x (ours: "
                f"{_ratio(samples, 'ours', 'floor'):.2f}x the floor)",
            )
        )
        for quantile in ("p50", "p99"):
            ours = _column(samples, f"ours_{quantile}_ms")
            under = " (goal < 20 ms)" if quantile == "p99" else ""
            rows.append(
                (
                    f"http: the same, {quantile} latency (ms)",
                    _summary(ours, 1),
                    _summary(_column(samples, f"reference_{quantile}_ms"), 1),
                    f"{_ratio(samples, f'ours_{quantile}_ms', f'reference_{quantile}_ms'):.2f}x"
                    + under,
                )
            )
    if name == "peer":
        for key, label in (
            ("append1", "append, 1 event per transaction (events/s)"),
            ("append10", "append, 10 events per transaction (events/s)"),
            ("read", "read a 10-event stream (reads/s)"),
        ):
            rows.append(
                (
                    f"peer: {label}, 16 concurrent; ours = EventStore",
                    _summary(_column(samples, f"{key}_ours")),
                    _summary(_column(samples, f"{key}_peer"))
                    + " (eventsourcing PostgresApplicationRecorder); "
                    + _summary(_column(samples, f"{key}_reference"))
                    + " (plain asyncpg)",
                    f"{_ratio(samples, f'{key}_ours', f'{key}_peer'):.2f}x the peer;"
                    f" peer {_ratio(samples, f'{key}_peer', f'{key}_reference'):.2f}x plain",
                )
            )
    if name == "execution":
        rate = _column(samples, "tests_per_s")
        rss = _column(samples, "peak_rss_mb")
        executing = _column(samples, "executing_tests_per_s")
        rows.append(
            (
                f"execution: one run of {sizes['tests']:,} no-op function tests, from the create"
                " request to the run's completion (tests/s)",
                _summary(rate),
                "goal ≥ 2,000",
                f"{statistics.median(rate) / 2000:.2f}x goal",
            )
        )
        rows.append(
            (
                "execution: the same, first test started to last outcome (tests/s)",
                _summary(executing),
                "goal ≥ 2,000",
                f"{statistics.median(executing) / 2000:.2f}x goal",
            )
        )
        rows.append(
            (
                "execution: server peak RSS (MB)",
                _summary(rss),
                "goal < 300",
                f"{statistics.median(rss) / 300:.2f}x limit",
            )
        )
    return rows


async def main() -> int:
    """Run the chosen workloads and print the table."""
    parser = argparse.ArgumentParser(prog="scripts/bench")
    parser.add_argument(
        "workloads",
        nargs="*",
        help="append1 append10 read scan rebuild memory http execution peer (default: all)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="measurements per workload (default 3; --quick: 1)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for development")
    args = parser.parse_args()
    runs = args.runs if args.runs is not None else 1 if args.quick else 3
    admin = await _admin_dsn()
    histories = Histories(admin)
    rows: list[tuple[str, str, str, str]] = []
    quick = args.quick
    sizes = {
        "append1": 2_000 if quick else 16_000,
        "append10": 8_000 if quick else 64_000,
        "read": 4_000 if quick else 32_000,
        "history": 100_000 if quick else 1_000_000,
        "http_seconds": 2 if quick else 10,
        "tests": 2_000 if quick else 10_000,
    }
    sizes["replay"] = long_run(sizes["history"])
    done: dict[str, list[dict[str, float]]] = {}

    def earlier(index: int) -> dict[str, dict[str, float]]:
        names = ("append1", "append10", "read")
        return {name: done[name][index] for name in names if len(done.get(name, ())) > index}

    workloads: dict[str, Callable[[int], Awaitable[dict[str, float]]]] = {
        "append1": lambda _: append_once(admin, 1, sizes["append1"]),
        "append10": lambda _: append_once(admin, 10, sizes["append10"]),
        "read": lambda _: read_once(admin, sizes["read"]),
        "scan": lambda _: scan_once(histories, sizes["history"]),
        "rebuild": lambda _: rebuild_once(histories, sizes["history"]),
        "memory": lambda _: memory_once(histories, sizes["history"]),
        "http": lambda _: http_once(admin, sizes["http_seconds"]),
        "execution": lambda _: execution_once(admin, sizes["tests"]),
        "peer": lambda index: peer_once(admin, sizes, earlier(index)),
    }
    unknown = set(args.workloads) - set(workloads)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    machine = await _machine(admin)
    started = time.perf_counter()
    try:
        for name in args.workloads or list(workloads):
            samples = done.setdefault(name, [])
            for index in range(runs):
                sample = await workloads[name](index)
                print(
                    f"{name} #{index + 1}: "
                    + ", ".join(f"{k}={v:,.1f}" for k, v in sample.items()),
                    file=sys.stderr,
                )
                samples.append(sample)
            rows.extend(_rows(name, samples, sizes))
            print(f"{name}: {time.perf_counter() - started:.0f}s into the bench", file=sys.stderr)
    finally:
        await histories.drop()
    print(
        f"\n{machine}\n{runs} run{'s' if runs > 1 else ''} each, median (min-max)"
        f"{' (--quick sizes)' if quick else ''}; whole bench {time.perf_counter() - started:.0f}s\n"
    )
    print("| workload | ours | reference | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    from service import logging as service_logging

    service_logging.configure("console", "warning")  # stdout is the table
    sys.exit(asyncio.run(main()))
