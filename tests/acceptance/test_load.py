"""scripts/load, briefly: clients creating runs and polling them against one live server.

The full load (64 clients for 60 s, GET p99 under 50 ms) is `scripts/load` with
its defaults; here it runs for seconds, and the p99 bound is asserted loosely
because a shared CI machine makes 50 ms noisy.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.acceptance.conftest import start_server, stop_server
from tests.helpers import run_script

ROOT = Path(__file__).resolve().parents[2]
KEY = "rtk_load_test_key"

pytestmark = pytest.mark.slow


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr[-2000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


async def test_sixteen_clients_for_eight_seconds_hold(admin_url: str) -> None:
    """Its own server and database: no error, every run completes, p99 reported; the db is gone."""
    result = await asyncio.to_thread(
        run_script,
        "load",
        *("--clients", "16", "--duration", "8", "--json", "--max-p99-ms", "1000"),
        database_url=admin_url,
    )
    summary = _summary(result)
    assert 0 == result.returncode, summary
    assert summary["ok"] is True
    assert 0 == summary["errors"]
    assert summary["runs_created"] >= 16
    assert summary["runs_created"] == summary["runs_completed"]
    assert 0 == summary["runs_incomplete"]
    assert summary["get"]["count"] >= summary["runs_created"]
    assert 0 < summary["get"]["p50_ms"] <= summary["get"]["p99_ms"] <= summary["get"]["max_ms"]
    assert summary["get"]["p99_ms"] < 1000
    assert summary["post"]["count"] == summary["runs_created"]
    assert summary["tests_per_s"] > 0
    assert summary["server_get"]["count"] == summary["get"]["count"]
    conn = await asyncpg.connect(admin_url)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = $1", summary["database"]
        )
    finally:
        await conn.close()
    assert 0 == left


async def test_a_slow_p99_or_a_run_that_does_not_pass_fails(database_url: str) -> None:
    """--url and --api-key drive a running server; a GET p99 at the bound, or runs whose
    tests do not pass, exit 1 and say why."""
    server, base_url = start_server(
        database_url,
        BOOTSTRAP_API_KEY=KEY,
        FUNCTION_MODULES="tests.run_functions",
        PYTHONPATH=str(ROOT),
    )
    brief = ("--url", base_url, "--api-key", KEY, "--clients", "2", "--duration", "1")
    brief += ("--tests", "2", "--json")
    try:
        slow, broken = await asyncio.gather(
            asyncio.to_thread(
                run_script, "load", *brief, "--max-p99-ms", "0", database_url=database_url
            ),
            asyncio.to_thread(
                run_script,
                "load",
                *brief,
                *("--entrypoint", "tests.run_functions:broken"),
                database_url=database_url,
            ),
        )
    finally:
        assert 0 == stop_server(server)
    summary = _summary(slow)
    assert 1 == slow.returncode, summary
    assert summary["ok"] is False
    assert 0 == summary["errors"]
    assert summary["runs_created"] == summary["runs_completed"] > 0
    assert [f"GET p99 {summary['get']['p99_ms']} ms is not under 0.0 ms"] == summary["failures"]
    assert "database" not in summary

    summary = _summary(broken)
    assert 1 == broken.returncode, summary
    assert 0 == summary["runs_completed"]
    assert summary["runs_incomplete"] == summary["runs_created"] > 0
    assert [f"{summary['runs_created']} runs did not complete"] == summary["failures"]
    fates = summary["runs_not_passed"].values()
    assert all({"status": "completed"} == fate["lifecycle"] for fate in fates)
    assert all(2 == fate["counts"]["blocked"] for fate in fates)


async def test_workers_run_the_tests_when_asked(admin_url: str) -> None:
    """--workers 1: serve runs no test itself, so every run completing proves the worker ran."""
    result = await asyncio.to_thread(
        run_script,
        "load",
        *("--clients", "2", "--duration", "1", "--tests", "2", "--workers", "1"),
        *("--drain-timeout", "15", "--max-p99-ms", "1000", "--json"),
        database_url=admin_url,
    )
    summary = _summary(result)
    assert 0 == result.returncode, summary
    assert 1 == summary["workers"]
    assert summary["runs_created"] == summary["runs_completed"] > 0
