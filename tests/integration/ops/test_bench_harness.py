"""scripts/bench's helpers: the generated history is real runs, the load figures are read right."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from events.store import fetch_stream
from projections.fold import fold
from projections.rebuild import rebuild

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench  # noqa: E402
import bench_history  # noqa: E402
import bench_http  # noqa: E402

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/v1/workflows/tests/runs/wftestrun_x
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.61ms    8.21ms  97.10ms   91.02%
    Req/Sec     2.51k   312.40     3.01k    71.00%
  Latency Distribution
     50%  850.00us
     75%   12.01ms
     90%   16.44ms
     99%    1.07s
  25034 requests in 10.00s, 29.84MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   2502.81
Transfer/sec:      2.98MB
"""


def test_wrk_output_is_read_with_its_units() -> None:
    """Microseconds, milliseconds and seconds become ms; failed responses are counted."""
    parsed = bench_http._parse_wrk(WRK_OUTPUT)
    assert 2502.81 == parsed["requests_per_s"]
    assert 25034 == parsed["requests"]
    assert 0.85 == parsed["p50_ms"]
    assert 1070.0 == parsed["p99_ms"]
    assert 3 == parsed["errors"]


async def test_bench_history_is_completed_runs_that_rebuild(pool: asyncpg.Pool) -> None:
    """Every generated stream folds into a completed run; the long runs have their sizes."""
    async with pool.acquire() as conn:
        history = await bench_history.build(conn, 6_000, 30)
    assert history.events >= 6_000
    assert history.events == await pool.fetchval("SELECT count(*) FROM events")
    assert history.runs == await pool.fetchval("SELECT count(*) FROM streams")
    # run.created, a start and an outcome per test, run.completed.
    assert 2 * 30 + 2 == history.big_run_events
    assert 2 * 3 + 2 == history.small_run_events
    long_run = fold(await fetch_stream(pool, f"run-{history.big_run}"))
    assert long_run is not None
    assert "completed" == long_run.run.lifecycle.__struct_config__.tag
    assert 30 == long_run.run.counts.lifecycle_counts.completed
    # Several runs interleave in the log, as concurrent runs do.
    first = await pool.fetch("SELECT stream_id FROM events ORDER BY global_position LIMIT 40")
    assert len({row["stream_id"] for row in first}) > 1
    report = await rebuild(pool)
    assert history.events == report.events
    statuses = await pool.fetch("SELECT status, count(*) AS n FROM test_runs GROUP BY status")
    assert [("completed", history.runs)] == [(row["status"], row["n"]) for row in statuses]
    # Runs re-run the same saved tests, as in life.
    saved, results = await pool.fetchrow(
        "SELECT count(DISTINCT test_id), count(*) FROM test_results"
    )
    assert saved < results
    assert saved <= bench_history.WORKFLOWS * max(bench_history.SIZES) + 30 + 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_minimal(port: int, body: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / "bench_http.py"), "minimal", str(port), str(body),
         "application/json; charset=utf-8"]
    )  # fmt: skip


async def test_aiohttp_load_generator_against_the_minimal_handler(tmp_path: Path) -> None:
    """The fallback load generator (no wrk) counts requests and latencies of the same bytes."""
    body = tmp_path / "body"
    body.write_bytes(b'{"id":"wftestrun_x"}')
    port = _free_port()
    server = _start_minimal(port, body)
    try:
        url = f"http://127.0.0.1:{port}/ref"
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the minimal server did not start"
                await asyncio.sleep(0.1)
        load = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(SCRIPTS / "bench_http.py"), "load", url, "0.5", "4",
             "Authorization: Bearer x"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    result = json.loads(load.stdout)
    assert result["requests"] > 0
    assert 0 == result["errors"]
    assert 0 < result["p50_ms"] <= result["p99_ms"]


async def test_bench_sides_take_alternating_turns() -> None:
    """Append and read compare in turns A B B A ...: each side's time is the sum of its
    turns, with every worker of a side running in each of them."""
    calls: list[tuple[str, int]] = []

    def side(name: str) -> Callable[[int], Awaitable[None]]:
        async def work(worker: int) -> None:
            calls.append((name, worker))
            await asyncio.sleep(0.01 if name == "ours" else 0)

        return work

    spent = await bench._alternating({"reference": side("reference"), "ours": side("ours")}, 4)
    turns = [name for name, worker in calls if worker == 0]
    assert turns == ["reference", "ours", "ours", "reference"] * 2
    assert len(calls) == 8 * bench.WRITERS
    assert spent["ours"] >= 4 * 0.01
    assert spent["reference"] < spent["ours"]


async def test_rebuild_floor_measures_both_sides_and_leaves_the_read_models(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The floor loads the rebuilt rows into a side schema it drops; it counts CPU per event."""
    async with pool.acquire() as conn:
        history = await bench_history.build(conn, 3_000, 20)
    await rebuild(pool)
    counts = "SELECT (SELECT count(*) FROM test_runs), (SELECT count(*) FROM test_results)"
    before = tuple(await pool.fetchrow(counts))
    data_directory = await pool.fetchval("SHOW data_directory")
    floor = await bench.rebuild_floor(database_url, data_directory, history.events)
    assert floor["floor_client_us"] > 0
    if bench._server_cpu_s(data_directory) is None:  # a server on another machine
        assert math.isnan(floor["floor_server_us"])
    else:
        assert floor["floor_server_us"] > 0
    assert before == tuple(await pool.fetchrow(counts))
    assert not await pool.fetchval(
        "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'bench_floor')"
    )


def test_rebuild_floor_rows_give_the_bound_of_both_sides() -> None:
    """The floor's bound is the cores over the floor's CPU per event, both sides together."""
    sample = {"client_us": 20.0, "server_us": 20.0, "floor_client_us": 8.0, "floor_server_us": 12.0}
    rows = bench._rebuild_cpu_rows([sample])
    cores = os.cpu_count() or 1
    floor_client, floor_server = rows[-2], rows[-1]
    assert floor_client[1].startswith("8.0")
    assert "0.40x the script's" == floor_client[3]
    assert floor_server[1].startswith("12.0")
    assert f"at most {cores / 20.0 * 1e6:,.0f} events/s" in floor_server[3]
