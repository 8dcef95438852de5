"""scripts/replay-run and scripts/rebuild-projections on a database of over 1,000 runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import msgspec
import pytest

from events.store import EventStore
from events.types import (
    AssertionResult,
    Metadata,
    NewEvent,
    RunCancelled,
    RunCompleted,
    TestBlocked,
    TestFailed,
    TestPassed,
    TestStarted,
)
from service.models import (
    CreateBlockRequest,
    CreateRunRequest,
    CreateTestRequest,
    CreateWorkflowRequest,
)
from service.ops import keys
from service.registry import store as registry
from service.runs import commands as runs
from service.runs import write as commands
from tests.helpers import API_KEY, run_script

ROOT = Path(__file__).resolve().parents[3]
RUN_COUNT = 1000

pytestmark = pytest.mark.slow


async def _populate(pool: asyncpg.Pool) -> list[str]:
    """1,000 runs of 3 tests; a third completed, some cancelled midway, the rest pending."""
    await keys.bootstrap(pool, API_KEY)
    organisation = await pool.fetchval("SELECT id FROM organisations")
    workflow = await registry.create_workflow(pool, organisation, CreateWorkflowRequest(name="w"))
    async with pool.acquire() as conn:
        block = await registry.create_block(
            conn, organisation, CreateBlockRequest(workflow_id=workflow.id, type="extract")
        )
        for n in range(3):
            body = {
                "workflow_id": workflow.id,
                "target": {"block_id": block.id},
                "source": {"type": "manual", "handle_inputs": {"in": {"type": "json", "data": n}}},
                "assertion": {
                    "target": {"output_handle_id": "out"},
                    "condition": {"kind": "exists"},
                },
            }
            await registry.create_test(conn, organisation, msgspec.convert(body, CreateTestRequest))
    store = EventStore(pool)
    semaphore = asyncio.Semaphore(8)

    async def one(index: int) -> str:
        async with semaphore:
            run = await runs.create_run(
                pool,
                store,
                organisation_id=organisation,
                body=CreateRunRequest(workflow_id=workflow.id),
                metadata=Metadata(request_id=f"seed-{index}"),
            )
            if index % 3 == 0:
                await _progress(pool, store, run.id, cancel=index % 9 == 0)
            return run.id

    return list(await asyncio.gather(*(one(i) for i in range(RUN_COUNT))))


async def _progress(pool: asyncpg.Pool, store: EventStore, run_id: str, *, cancel: bool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        loaded = await conn.fetch(
            "SELECT id, test_id FROM test_results WHERE run_id = $1 ORDER BY position", run_id
        )
        events: list[NewEvent] = []
        outcomes = (TestPassed, TestFailed, TestBlocked)
        for position, row in enumerate(loaded):
            events.append(NewEvent(event=TestStarted(result_id=row["id"], test_id=row["test_id"])))
            if cancel and position == 1:
                events.append(NewEvent(event=RunCancelled(reason="seed")))
                break
            result = AssertionResult(
                assertion_id="assert_x", condition_kind="exists", outcome="passed"
            )
            outcome = outcomes[position % 3]
            events.append(
                NewEvent(
                    event=outcome(
                        result_id=row["id"],
                        test_id=row["test_id"],
                        handle_outputs={"out": {"v": position}},
                        assertion_result=result,
                        duration_ms=5,
                    )
                )
            )
        if not cancel:
            events.append(NewEvent(event=RunCompleted()))
        await commands.append_and_project(commands.Writes(conn, store), f"run-{run_id}", events, 1)


async def test_replay_and_rebuild_verify_on_a_thousand_runs(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Both audits pass on a populated database, and both catch a tampered read model."""
    run_ids = await _populate(pool)
    assert RUN_COUNT == await pool.fetchval("SELECT count(*) FROM test_runs")
    completed, cancelled = run_ids[3], run_ids[9]

    for run_id in (completed, cancelled, run_ids[1]):
        replayed = run_script("replay-run", run_id, "--verify", database_url=database_url)
        assert 0 == replayed.returncode, replayed.stderr
        assert "run.created" in replayed.stdout
    table = run_script("replay-run", completed, database_url=database_url).stdout
    assert "run.completed" in table
    assert "completed" in table.splitlines()[-1]

    lines = run_script("replay-run", cancelled, "--json", database_url=database_url).stdout
    states = [json.loads(line) for line in lines.splitlines()]
    assert ["run.created", "test.started", "test.passed", "test.started", "run.cancelled"] == [
        s["type"] for s in states
    ]
    assert [1, 2, 3, 4, 5] == [s["version"] for s in states]
    last = states[-1]["state"]
    assert "cancelled" == last["lifecycle"]["status"]
    lifecycle = last["counts"]["lifecycle_counts"]
    assert 3 == sum(lifecycle.values())
    assert {"running": 1, "completed": 1, "cancelled": 1} == {
        k: v for k, v in lifecycle.items() if v
    }

    before = await pool.fetch("SELECT * FROM test_runs ORDER BY id")
    rebuilt = run_script(
        "rebuild-projections", "--verify", "--no-progress", database_url=database_url
    )
    assert 0 == rebuilt.returncode, rebuilt.stderr
    assert f"rebuilt {RUN_COUNT} runs" in rebuilt.stdout
    assert "events/s" in rebuilt.stdout
    assert [dict(r) for r in before] == [
        dict(r) for r in await pool.fetch("SELECT * FROM test_runs ORDER BY id")
    ]

    # Tamper with one run's read model: both audits must notice, and the rebuild swaps nothing.
    await pool.execute(
        "UPDATE test_runs SET resource = jsonb_set(resource::jsonb, '{total_tests}', '7')::json"
        " WHERE id = $1",
        completed,
    )
    assert (
        1 == run_script("replay-run", completed, "--verify", database_url=database_url).returncode
    )
    refused = run_script(
        "rebuild-projections", "--verify", "--no-progress", database_url=database_url
    )
    assert 1 == refused.returncode
    assert "nothing swapped" in refused.stderr
    assert 7 == await pool.fetchval(
        "SELECT (resource->>'total_tests')::int FROM test_runs WHERE id = $1", completed
    )
    # Without --verify the rebuild repairs the read model from the events.
    repaired = run_script("rebuild-projections", "--no-progress", database_url=database_url)
    assert 0 == repaired.returncode, repaired.stderr
    assert (
        0 == run_script("replay-run", completed, "--verify", database_url=database_url).returncode
    )
    leftovers = await pool.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^(rebuild|retired)_'"
    )
    assert 0 == leftovers


async def test_replay_of_an_unknown_run_fails(database_url: str) -> None:
    """Replaying a run that has no events says so and exits non-zero."""
    result = run_script("replay-run", "wftestrun_missing", database_url=database_url)
    assert 2 == result.returncode
    assert "not found" in result.stderr
