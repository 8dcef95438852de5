"""The server and two worker processes share one database; a worker is SIGKILLed mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from retab import Retab

from tests.acceptance.conftest import start_server, stop_server
from tests.helpers import run_script

ROOT = Path(__file__).resolve().parents[2]
KEY = "rtk_workers_test_key"
TESTS = 500

pytestmark = pytest.mark.slow

ENV = {
    "BOOTSTRAP_API_KEY": KEY,
    "FUNCTION_MODULES": "tests.run_functions",
    "RUNNER_CONCURRENCY": "8",
    "RUNNER_BATCH": "8",
    "TEST_TIMEOUT_S": "2",
    "LEASE_MARGIN_S": "1",
    "RETRY_BACKOFF_S": "0.1",
    "PYTHONPATH": str(ROOT),
}


def _worker(database_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env={**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning", **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


async def test_two_workers_and_the_server_run_500_tests_through_a_sigkill(
    database_url: str, pool: asyncpg.Pool
) -> None:
    """Every test gets exactly one outcome and the counts add up, though a worker died mid-run."""
    server, base_url = start_server(database_url, **ENV)
    workers = [_worker(database_url), _worker(database_url)]
    try:
        client = Retab(api_key=KEY, base_url=base_url, max_retries=0)
        workflow = client.workflows.create(project_id="p", name="load")
        block = client.workflows.blocks.create(
            workflow_id=workflow.id,
            type="function",
            config={"entrypoint": "tests.run_functions:sleepy"},
        )
        for n in range(TESTS):
            client.workflows.tests.create(
                workflow_id=workflow.id,
                target={"type": "block", "block_id": block.id},
                source={
                    "type": "manual",
                    "handle_inputs": {
                        "input": {"type": "json", "data": {"name": f"v{n}", "delay": 0.05}}
                    },
                },
                assertion={
                    "target": {"output_handle_id": "output-json-0"},
                    "condition": {"kind": "exists"},
                },
            )
        run = client.workflows.tests.runs.create(workflow_id=workflow.id)

        # Kill the first worker while it is executing tests it has started.
        victim = workers[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            executing = await pool.fetchval(
                """
                SELECT count(*) FROM test_queue q
                  JOIN events e ON e.type = 'test.started'
                               AND e.data->>'result_id' = q.result_id
                               AND e.data->>'worker' = q.lease_owner
                 WHERE q.lease_owner LIKE $1
                """,
                f"%:{victim.pid}:%",
            )
            if executing:
                break
            await asyncio.sleep(0.005)
        else:
            pytest.fail("the worker never started a test")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        deadline = time.monotonic() + 120
        while client.workflows.tests.runs.get(run.id).lifecycle.status != "completed":
            if time.monotonic() > deadline:
                pytest.fail("the run did not complete")
            await asyncio.sleep(0.2)
        final = client.workflows.tests.runs.get(run.id)
    finally:
        codes = [stop_server(server)]
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            codes.append(worker.wait(timeout=30))
    assert 0 == codes[0]
    assert 0 == codes[2], "a worker asked to stop exits 0"

    assert final.counts is not None
    lifecycle, outcome = final.counts.lifecycle_counts, final.counts.outcome
    assert lifecycle is not None
    assert outcome is not None
    assert TESTS == final.total_tests
    assert TESTS == sum(lifecycle.model_dump().values())
    assert lifecycle.completed == sum(outcome.model_dump().values())
    assert TESTS == (lifecycle.completed or 0) + (lifecycle.error or 0)

    outcomes = await pool.fetch(
        """
        SELECT data->>'result_id' AS result_id, count(*) AS n FROM events
         WHERE stream_id = $1
           AND type IN ('test.passed', 'test.failed', 'test.blocked', 'test.errored')
         GROUP BY 1
        """,
        f"run-{run.id}",
    )
    assert TESTS == len(outcomes)
    assert {1} == {row["n"] for row in outcomes}
    workers_seen = await pool.fetchval(
        "SELECT count(DISTINCT data->>'worker') FROM events WHERE type = 'test.started'"
    )
    assert 3 == workers_seen, "the server's runner and both workers took part"
    restarted = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'test.started' AND (data->>'attempt')::int > 1"
    )
    assert restarted > 0, "the killed worker's tests ran again"

    assert 0 == run_script("replay-run", run.id, "--verify", database_url=database_url).returncode
    rebuilt = run_script(
        "rebuild-projections", "--verify", "--no-progress", database_url=database_url
    )
    assert 0 == rebuilt.returncode, rebuilt.stderr
