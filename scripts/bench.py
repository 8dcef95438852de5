"""The benchmark behind scripts/bench: workloads measured several times, reported as medians.

Workloads:
  execution  one run of N no-op `function` tests through `python -m service serve`
             (the in-process runner): tests/s from the create request to the
             run's completion, and the server's peak resident memory.
  append1    16 writers on distinct streams, 1 event per transaction, through
  append10   EventStore.append with expected versions (10 events per transaction);
             reference: plain asyncpg INSERTs into a minimal events table.
  read       16 concurrent readers of 10-event streams (EventStore.read_stream,
             typed); reference: the same SELECT on the minimal table.
  scan       every event, in commit order, decoded (EventStore.read_all, pages of
             1,000); reference: an ordered keyset scan of the minimal table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec

ROOT = Path(__file__).resolve().parents[1]
KEY = "rtk_bench_" + uuid.uuid4().hex


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def _admin_dsn() -> str:
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        return explicit
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        conn = await asyncpg.connect(local, timeout=3)
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError):
        from service.db import start_embedded  # noqa: PLC0415

        return start_embedded(ROOT / ".data" / "bench-postgres")
    return local


class Database:
    """A fresh database for one measurement, dropped afterwards."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.dsn = _with_database(admin, self.name)

    async def __aenter__(self) -> Database:
        conn = await asyncpg.connect(self.admin)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        from service import db  # noqa: PLC0415

        await db.migrate(self.dsn)
        return self

    async def __aexit__(self, *_: object) -> None:
        conn = await asyncpg.connect(self.admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _seed_tests(dsn: str, count: int) -> str:
    """A workflow with a no-op function block and `count` saved tests; returns the workflow id."""
    from service import keys, registry  # noqa: PLC0415
    from service.db import create_pool  # noqa: PLC0415
    from service.models import (  # noqa: PLC0415
        CreateBlockRequest,
        CreateTestRequest,
        CreateWorkflowRequest,
    )

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
        port = _free_port()
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


async def _store_pool(dsn: str, size: int = WRITERS) -> asyncpg.Pool:
    from service.db import create_pool  # noqa: PLC0415

    pool = await create_pool(dsn, min_size=size, max_size=size)
    await pool.execute(_MINIMAL)
    return pool


async def append_once(admin: str, per_transaction: int, total: int) -> dict[str, float]:
    """16 writers, `per_transaction` events per append: ours and plain INSERTs, events/s."""
    from events.store import EventStore  # noqa: PLC0415
    from events.types import NewEvent, TestStarted  # noqa: PLC0415

    each = total // WRITERS // per_transaction
    async with Database(admin) as database:
        pool = await _store_pool(database.dsn)
        store = EventStore(pool)
        try:

            async def ours(writer: int) -> None:
                version = 0
                for _ in range(each):
                    events = [
                        NewEvent(event=TestStarted(result_id="r", test_id="t", worker="bench"))
                        for _ in range(per_transaction)
                    ]
                    await store.append(f"run-w{writer}", events, version)
                    version += per_transaction

            async def reference(writer: int) -> None:
                version = 0
                sql = (
                    "INSERT INTO bench_minimal (stream_id, version, type, data)"
                    " VALUES ($1, $2, $3, $4)"
                )
                async with pool.acquire() as conn:
                    for _ in range(each):
                        rows = [
                            (f"w{writer}", version + i + 1, "test.started", _PAYLOAD)
                            for i in range(per_transaction)
                        ]
                        if per_transaction == 1:
                            await conn.execute(sql, *rows[0])
                        else:
                            await conn.executemany(sql, rows)
                        version += per_transaction

            timings = {}
            for name, writer in (("reference", reference), ("ours", ours)):
                started = time.perf_counter()
                await asyncio.gather(*(writer(w) for w in range(WRITERS)))
                timings[name] = each * per_transaction * WRITERS / (time.perf_counter() - started)
        finally:
            await pool.close()
    return timings


async def read_once(admin: str, reads: int) -> dict[str, float]:
    """16 readers of 10-event streams: ours (typed) and the plain SELECT, reads/s."""
    from events.store import EventStore  # noqa: PLC0415

    async with Database(admin) as database:
        pool = await _store_pool(database.dsn)
        store = EventStore(pool)
        try:
            for stream in range(WRITERS):
                await pool.execute(
                    "SELECT * FROM append_events($1, 0, $2, $3, $4, $5, $6, $7)",
                    f"run-r{stream}",
                    [uuid.uuid4() for _ in range(10)],
                    ["test.started"] * 10,
                    [2] * 10,
                    [_PAYLOAD] * 10,
                    [b"{}"] * 10,
                    [datetime.now(UTC)] * 10,
                )
                await pool.executemany(
                    "INSERT INTO bench_minimal (stream_id, version, type, data)"
                    " VALUES ($1, $2, 'test.started', $3)",
                    [(f"r{stream}", v, _PAYLOAD) for v in range(1, 11)],
                )
            each = reads // WRITERS

            async def ours(reader: int) -> None:
                for _ in range(each):
                    assert len(await store.read_stream(f"run-r{reader}")) == 10  # noqa: S101

            async def reference(reader: int) -> None:
                sql = (
                    "SELECT global_position, stream_id, version, type, data FROM bench_minimal"
                    " WHERE stream_id = $1 ORDER BY version"
                )
                async with pool.acquire() as conn:
                    for _ in range(each):
                        assert len(await conn.fetch(sql, f"r{reader}")) == 10  # noqa: S101

            timings = {}
            for name, reader in (("reference", reference), ("ours", ours)):
                started = time.perf_counter()
                await asyncio.gather(*(reader(r) for r in range(WRITERS)))
                timings[name] = each * WRITERS / (time.perf_counter() - started)
        finally:
            await pool.close()
    return timings


async def scan_once(admin: str, events: int) -> dict[str, float]:
    """Every event in commit order: read_all decoded, and a plain keyset scan, events/s."""
    from events.store import ORIGIN, EventStore, checkpoint_of  # noqa: PLC0415

    async with Database(admin) as database:
        pool = await _store_pool(database.dsn, 2)
        store = EventStore(pool)
        try:
            await pool.execute(
                """
                INSERT INTO events (stream_id, version, type, schema_version, data, metadata,
                                    event_id, occurred_at)
                SELECT 'run-s' || (n / 100), n % 100 + 1, 'test.started', 2, $2::jsonb, '{}',
                       gen_random_uuid(), now()
                  FROM generate_series(0, $1 - 1) n
                """,
                events,
                _PAYLOAD,
            )
            await pool.execute(
                """
                INSERT INTO bench_minimal (stream_id, version, type, data)
                SELECT 's' || (n / 100), n % 100 + 1, 'test.started', $2::jsonb
                  FROM generate_series(0, $1 - 1) n
                """,
                events,
                _PAYLOAD,
            )
            await pool.execute("VACUUM ANALYZE events")
            await pool.execute("VACUUM ANALYZE bench_minimal")
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
            after, seen = ORIGIN, 0
            while page := await store.read_all(after, 1000):
                seen += len(page)
                after = checkpoint_of(page[-1])
            timings["ours"] = seen / (time.perf_counter() - started)
            if seen != events:
                msg = f"read_all returned {seen} of {events} events"
                raise RuntimeError(msg)
        finally:
            await pool.close()
    return timings


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


async def main() -> int:
    """Run the chosen workloads and print the table."""
    parser = argparse.ArgumentParser(prog="scripts/bench")
    parser.add_argument(
        "workloads", nargs="*", help="append1 append10 read scan execution (default: all)"
    )
    parser.add_argument("--runs", type=int, default=3, help="measurements per workload")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for development")
    args = parser.parse_args()
    admin = await _admin_dsn()
    rows: list[tuple[str, str, str, str]] = []
    quick = args.quick
    workloads: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
        "append1": lambda: append_once(admin, 1, 4_000 if quick else 16_000),
        "append10": lambda: append_once(admin, 10, 16_000 if quick else 64_000),
        "read": lambda: read_once(admin, 8_000 if quick else 32_000),
        "scan": lambda: scan_once(admin, 100_000 if quick else 1_000_000),
        "execution": lambda: execution_once(admin, 2_000 if quick else 10_000),
    }
    labels = {
        "append1": ("append: 16 writers, 1 event per transaction (events/s)", 0.6),
        "append10": ("append: 16 writers, 10 events per transaction (events/s)", 0.6),
        "read": ("read a 10-event stream, 16 concurrent (reads/s)", 0.8),
        "scan": ("commit-order scan, decoded (events/s)", 0.5),
    }
    unknown = set(args.workloads) - set(workloads)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    for name in args.workloads or list(workloads):
        samples = []
        for index in range(args.runs):
            sample = await workloads[name]()
            print(
                f"{name} #{index + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in sample.items()),
                file=sys.stderr,
            )
            samples.append(sample)
        if name in labels:
            label, goal = labels[name]
            ours = [s["ours"] for s in samples]
            reference = [s["reference"] for s in samples]
            ratios = [o / r for o, r in zip(ours, reference, strict=True)]
            rows.append(
                (
                    label,
                    _summary(ours),
                    _summary(reference) + " (plain asyncpg)",
                    f"{statistics.median(ratios):.2f}x (goal ≥ {goal}x)",
                )
            )
        if name == "execution":
            tests = 2_000 if args.quick else 10_000
            rate = [s["tests_per_s"] for s in samples]
            rss = [s["peak_rss_mb"] for s in samples]
            executing = [s["executing_tests_per_s"] for s in samples]
            rows.append(
                (
                    f"execution: one run of {tests:,} no-op function tests, from the create"
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
    print(f"\n{args.runs} runs each, median (min-max); {os.cpu_count()} cores\n")
    print("| workload | ours | reference | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
