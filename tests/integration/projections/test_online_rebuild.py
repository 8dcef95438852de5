"""Rebuild while serving: runs keep being created and executed; nothing is lost or applied twice."""

from __future__ import annotations

import asyncio

from projections.rebuild import rebuild
from service.http.handlers.common import POOL
from tests.helpers import ApiClient, run_script
from tests.integration.execution.test_execution import (
    CONFIG,
    _add_test,
    _assertion,
    _function_workflow,
    running,
)

RUNS = "/v1/workflows/tests/runs"


async def test_an_online_rebuild_under_continuous_load_verifies(
    client: ApiClient, database_url: str
) -> None:
    """Runs are created and executed throughout two online rebuilds; both verify, the end too."""
    pool = client.http.server.app[POOL]
    workflow_id, block_id = await _function_workflow(client, "tests.run_functions:slow_invoice")
    for n in range(8):
        await _add_test(
            client, workflow_id, block_id, {"name": "ACME", "delay": 0.01 * n}, _assertion("exists")
        )
    stop = asyncio.Event()
    created: list[str] = []

    async def load() -> None:
        while not stop.is_set():
            run = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
            created.append(run["id"])
            await asyncio.sleep(0.02)

    async with running(pool, CONFIG):
        for _ in range(10):
            created.append(
                (await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202))["id"]
            )
        writer = asyncio.create_task(load())
        try:
            await asyncio.sleep(0.3)
            first = await rebuild(pool, verify=True, online=True)
            assert first.swapped
            assert first.rounds >= 1
            assert {"test_runs": 0, "test_results": 0, "test_queue": 0} == first.differences
            # In a thread: the runner and the load share this event loop, and the
            # script's rebuild waits for their transactions to finish.
            script = await asyncio.to_thread(
                run_script, "rebuild-projections", "--online", "--verify", "--no-progress",
                database_url=database_url,
            )  # fmt: skip
            assert 0 == script.returncode, script.stderr
            assert "rounds before the lock" in script.stdout
        finally:
            stop.set()
            await writer

        async def settled() -> bool:
            return 0 == await pool.fetchval("SELECT count(*) FROM test_queue")

        deadline = asyncio.get_running_loop().time() + 60
        while not await settled():
            assert asyncio.get_running_loop().time() < deadline, "the runs did not finish"
            await asyncio.sleep(0.1)
    assert len(created) == await pool.fetchval("SELECT count(*) FROM test_runs")
    final = await rebuild(pool, verify=True)
    assert {"test_runs": 0, "test_results": 0, "test_queue": 0} == final.differences
    statuses = {r["status"] for r in await pool.fetch("SELECT status FROM test_runs")}
    assert {"completed"} == statuses
    outcomes = await pool.fetchval(
        """
        SELECT count(*) FROM (
            SELECT data->>'result_id' FROM events
             WHERE type IN ('test.passed', 'test.failed', 'test.blocked', 'test.errored')
             GROUP BY 1 HAVING count(*) > 1) twice
        """
    )
    assert 0 == outcomes, "no test has two outcomes"
