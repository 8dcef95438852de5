"""Latest run summaries on saved tests: an async projection in commit order; test freshness."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from projections.asynchronous import catch_up
from projections.readmodel import RESULT_COLUMNS, result_row
from projections.rebuild import rebuild
from projections.resources import (
    Cancelled,
    Completed,
    Errored,
    Pending,
    Queued,
    Running,
    Timing,
    VerdictSummary,
    WorkflowTestResult,
)
from projections.summaries import _RESULTS, LatestRunSummaries
from service.http.handlers.common import POOL
from tests.helpers import ApiClient
from tests.integration.execution.test_execution import _finished, running

RUNS = "/v1/workflows/tests/runs"


async def _caught_up(pool: asyncpg.Pool) -> None:
    """Follow until the checkpoint is the last event in commit order.

    read_all waits for older transactions anywhere on the cluster, so a pass
    may read nothing yet: keep going until the checkpoint gets there.
    """
    target = await pool.fetchrow(
        "SELECT transaction_id, global_position FROM events"
        " ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    )
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        await catch_up(pool, LatestRunSummaries(), batch=7)
        reached = await pool.fetchval(
            "SELECT (transaction_id, global_position) >= ($1::xid8, $2::bigint)"
            " FROM projection_checkpoints WHERE name = 'latest_run_summaries'",
            target["transaction_id"],
            target["global_position"],
        )
        if reached:
            return
        assert asyncio.get_running_loop().time() < deadline, "the projection did not catch up"
        await asyncio.sleep(0.05)


async def _two_tests(client: ApiClient) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    workflow = await client.workflow()
    block = await client.block(
        workflow["id"], type="function", config={"entrypoint": "tests.run_functions:invoice"}
    )

    async def test(expected: str) -> dict[str, Any]:
        return await client.test(
            workflow["id"],
            block["id"],
            source={
                "type": "manual",
                "handle_inputs": {"input": {"type": "json", "data": {"name": "ACME"}}},
            },
            assertion={
                "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
                "condition": {"kind": "equals", "expected": expected},
            },
        )

    return workflow["id"], block["id"], await test("ACME"), await test("Globex")


async def test_summaries_follow_runs_and_freshness_follows_edits(client: ApiClient) -> None:
    """After a run: latest, latest passing and latest failing; edits make the test stale."""
    pool = client.http.server.app[POOL]
    workflow_id, block_id, passing, failing = await _two_tests(client)
    fresh = await client.call("GET", f"/v1/workflows/tests/{passing['id']}", expect=200)
    assert {"status": "unknown", "reasons": ["no_baseline"]} == {
        k: fresh["freshness"][k] for k in ("status", "reasons")
    }
    assert fresh["latest_run_summary"] is None

    run = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    async with running(pool):
        await _finished(client, run["id"])
    await _caught_up(pool)

    good = await client.call("GET", f"/v1/workflows/tests/{passing['id']}", expect=200)
    latest = good["latest_run_summary"]
    assert ("completed", "passed") == (latest["status"], latest["outcome"])
    assert latest["run_record_id"].startswith("wfnodetestrun_")
    assert run["id"] == latest["run_id"]
    assert latest["started_at"] <= latest["completed_at"]
    assert latest == good["latest_passing_run_summary"]
    assert good["latest_failing_run_summary"] is None
    assert {"status": "fresh", "reasons": [], "baseline_run_id": run["id"]} == {
        k: good["freshness"][k] for k in ("status", "reasons", "baseline_run_id")
    }
    bad = await client.call("GET", f"/v1/workflows/tests/{failing['id']}", expect=200)
    assert "failed" == bad["latest_run_summary"]["outcome"]
    assert bad["latest_run_summary"] == bad["latest_failing_run_summary"]
    assert bad["latest_passing_run_summary"] is None
    listed = await client.call("GET", "/v1/workflows/tests", expect=200, workflow_id=workflow_id)
    assert {passing["id"]: "passed", failing["id"]: "failed"} == {
        t["id"]: t["latest_run_summary"]["outcome"] for t in listed["data"]
    }

    # A second run becomes the latest; the passing one moves with it.
    second = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    async with running(pool):
        await _finished(client, second["id"])
    await _caught_up(pool)
    again = await client.call("GET", f"/v1/workflows/tests/{passing['id']}", expect=200)
    assert second["id"] == again["latest_run_summary"]["run_id"]
    assert second["id"] == again["latest_passing_run_summary"]["run_id"]

    # Freshness is computed at read time against the current draft.
    assertion = {
        "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
        "condition": {"kind": "equals", "expected": "Other"},
    }
    path = f"/v1/workflows/tests/{passing['id']}"
    await client.call("PATCH", path, {"assertion": assertion}, expect=200)
    stale = await client.call("GET", path, expect=200)
    assert ("stale", ["validity_changed"]) == (
        stale["freshness"]["status"],
        stale["freshness"]["reasons"],
    )
    await client.call("PATCH", f"/v1/workflows/blocks/{block_id}", {"config": {"x": 1}}, expect=200)
    staler = await client.call("GET", path, expect=200)
    assert ["engine_changed", "validity_changed"] == staler["freshness"]["reasons"]


async def test_replaying_and_rebuilding_the_projection_gives_the_same_rows(
    client: ApiClient,
) -> None:
    """Re-applying events from the origin changes nothing; a rebuild restores tampered rows."""
    pool = client.http.server.app[POOL]
    workflow_id, _, _, _ = await _two_tests(client)
    for _ in range(2):
        run = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
        async with running(pool):
            await _finished(client, run["id"])
    await _caught_up(pool)
    rows = "SELECT * FROM test_run_summaries ORDER BY test_id"
    before = [dict(r) for r in await pool.fetch(rows)]
    assert 2 == len(before)
    await pool.execute(
        "UPDATE projection_checkpoints SET transaction_id = '0', global_position = 0"
    )
    await _caught_up(pool)
    assert before == [dict(r) for r in await pool.fetch(rows)]
    await pool.execute("UPDATE test_run_summaries SET latest = NULL")
    await rebuild(pool)
    assert before == [dict(r) for r in await pool.fetch(rows)]


async def test_the_rebuild_reads_three_results_per_test_and_merges_as_replaying_all(
    pool: asyncpg.Pool,
) -> None:
    """`rebuild` picks, per test, the latest finished, passing and failing results in SQL;
    over random results (ties on start time, ids whose code-point order differs from
    the locale's, every lifecycle) its rows equal merging every result in Python."""
    rng = random.Random(7)
    created = datetime(2026, 11, 1, tzinfo=UTC)
    lifecycles: list[Any] = [Pending(), Queued(), Running(), Completed(), Completed(),
                             Errored(message="x"), Cancelled(reason="stop")]  # fmt: skip
    rows: list[tuple[Any, ...]] = []
    for number in range(1200):
        test_id = f"wfnodetest_{rng.randrange(12)}"
        lifecycle = rng.choice(lifecycles)
        started = (
            None
            if isinstance(lifecycle, Pending | Queued) or rng.random() < 0.1
            else created + timedelta(seconds=rng.randrange(6))  # many ties
        )
        verdict = rng.choice(["passed", "failed", "blocked"]) if lifecycle == Completed() else None
        result = WorkflowTestResult(
            # Upper and lower case sort apart in code points, together in a locale.
            id=f"{rng.choice(['a', 'B', 'b', 'A'])}_{number:04d}",
            workflow_test_run_id=f"run_{number}",
            test_id=test_id,
            workflow_eval_run_id=f"run_{number}",
            eval_id=test_id,
            workflow_id="wf",
            block_id="blk",
            block_type="function",
            lifecycle=lifecycle,
            timing=Timing(created_at=created, started_at=started),
            verdict=verdict,
            verdict_summary=VerdictSummary(passed=verdict == "passed") if verdict else None,
            handle_inputs_fingerprint="h",
            block_config_fingerprint="b",
            block_execution_fingerprint="b",
            workflow_draft_fingerprint="d",
            execution_fingerprint="e",
        )
        rows.append(result_row("org_1", result, 3, 0, "v"))
    # A deployment's default collation may order ids unlike Python: make it so here.
    await pool.execute('ALTER TABLE test_results ALTER COLUMN id TYPE text COLLATE "und-x-icu"')
    await pool.copy_records_to_table("test_results", records=rows, columns=RESULT_COLUMNS)
    everything = "SELECT * FROM test_run_summaries ORDER BY test_id"
    async with pool.acquire() as conn, conn.transaction():
        await LatestRunSummaries().reset(conn)
        await LatestRunSummaries()._merge(conn, await conn.fetch(_RESULTS))
        merged = [dict(r) for r in await conn.fetch(everything)]
    assert 12 == len(merged)
    assert all(r["latest_passing"] and r["latest_failing"] for r in merged)
    async with pool.acquire() as conn, conn.transaction():
        await LatestRunSummaries().rebuild(conn)
        assert merged == [dict(r) for r in await conn.fetch(everything)]
