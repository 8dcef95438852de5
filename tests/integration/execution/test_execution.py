"""Runs actually run: the in-process runner, outcomes, timing, results, cancel, leases."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import pytest

from events.store import EventStore
from service.config import Config
from service.execution import queue
from service.execution.runner import Runner
from service.http.handlers.common import POOL
from tests.helpers import OTHER_API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"
RESULTS = "/v1/workflows/tests/results"

CONFIG = Config(
    function_modules=frozenset({"tests.run_functions"}),
    runner_concurrency=16,
    runner_batch=20,
    test_timeout_s=5,
    retry_backoff_s=0.05,
    allowed_outbound_hosts=("127.0.0.1",),  # the tests' own local servers
)


def _pool(client: ApiClient) -> asyncpg.Pool:
    return client.http.server.app[POOL]


@asynccontextmanager
async def running(
    pool: asyncpg.Pool, config: Config = CONFIG, metrics: Any = None
) -> AsyncIterator[Runner]:
    """An in-process runner (counting into `metrics`, if given) for the duration of the block."""
    stop = asyncio.Event()
    runner = Runner(pool, config, metrics=metrics)
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def until(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    """Wait until `check()` holds (the runner works in the background)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("timed out waiting for the runner")
        await asyncio.sleep(0.02)


async def _finished(client: ApiClient, run_id: str) -> dict[str, Any]:
    async def done() -> bool:
        run = await client.call("GET", f"{RUNS}/{run_id}", expect=200)
        return bool(run["lifecycle"]["status"] in ("completed", "cancelled", "error"))

    await until(done)
    return await client.call("GET", f"{RUNS}/{run_id}", expect=200)  # type: ignore[no-any-return]


def _assertion(kind: str = "equals", path: str = "vendor.name", **fields: Any) -> dict[str, Any]:
    return {
        "target": {"output_handle_id": "output-json-0", "path": path},
        "condition": {"kind": kind, **fields},
    }


async def _function_workflow(
    client: ApiClient, entrypoint: str = "tests.run_functions:invoice"
) -> tuple[str, str]:
    workflow = await client.workflow()
    block = await client.block(workflow["id"], type="function", config={"entrypoint": entrypoint})
    return workflow["id"], block["id"]


async def _add_test(
    client: ApiClient, workflow_id: str, block_id: str, data: Any, assertion: dict[str, Any]
) -> dict[str, Any]:
    return await client.test(
        workflow_id,
        block_id,
        source={"type": "manual", "handle_inputs": {"input": {"type": "json", "data": data}}},
        assertion=assertion,
    )


async def test_a_run_executes_every_test_to_its_verdict(client: ApiClient) -> None:
    """Passed, failed and blocked tests end in their buckets; the run completes with timing."""
    workflow_id, block_id = await _function_workflow(client)
    await _add_test(client, workflow_id, block_id, {"name": "ACME"}, _assertion(expected="ACME"))
    await _add_test(client, workflow_id, block_id, {"name": "Other"}, _assertion(expected="ACME"))
    await _add_test(
        client, workflow_id, block_id, {"name": "ACME"}, _assertion("matches_regex", pattern="(")
    )
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    async with running(_pool(client)):
        run = await _finished(client, created["id"])
    assert "completed" == run["lifecycle"]["status"]
    page = await client.call("GET", RESULTS, expect=200, run_id=created["id"], order="asc")
    assert {"passed": 1, "failed": 1, "blocked": 1} == run["counts"]["outcome"]
    assert 3 == run["counts"]["lifecycle_counts"]["completed"]
    assert {"passed": 1, "failed": 1, "blocked": 1, "queued": 0, "running": 0} == {
        k: run["counts"][k] for k in ("passed", "failed", "blocked", "queued", "running")
    }
    timing = run["timing"]
    assert timing["created_at"] <= timing["started_at"] <= timing["completed_at"]
    assert timing["duration_ms"] is not None
    assert timing["duration_ms"] >= 0

    page = await client.call("GET", RESULTS, expect=200, run_id=created["id"], order="asc")
    results = page["data"]
    assert ["passed", "failed", "blocked"] == [r["verdict"] for r in results]
    first = results[0]
    assert {"status": "completed"} == first["lifecycle"]
    assert {
        "output-json-0": {"type": "json", "data": {"vendor": {"name": "ACME"}, "total": 0}}
    } == (first["handle_outputs"])
    assert {"input": {"type": "json", "data": {"name": "ACME"}}} == first["handle_inputs"]
    assert "equals" == first["assertion_result"]["condition_kind"]
    assert first["verdict_summary"]["passed"] is True
    assert results[1]["verdict_summary"]["failed_assertion_ids"] == [
        results[1]["assertion_result"]["assertion_id"]
    ]
    assert "invalid_regex" == results[2]["assertion_result"]["failure"]["code"]
    for result in results:
        assert result["workflow_test_run_id"] == created["id"]
        assert result["started_at" if False else "timing"]["completed_at"] is not None
        assert result["execution_fingerprint"].startswith("sha256:")
    # The last outcome and run.completed were decided together: completed_at is the last outcome.
    last = max(r["timing"]["completed_at"] for r in results)
    assert last == timing["completed_at"]
    fetched = await client.call("GET", f"{RESULTS}/{first['id']}", expect=200)
    assert first == fetched


async def test_a_failing_block_is_blocked_not_errored(client: ApiClient) -> None:
    """A function that raises, and a block type with no runtime, are `blocked` with the reason."""
    workflow_id, block_id = await _function_workflow(client, "tests.run_functions:broken")
    await _add_test(client, workflow_id, block_id, {}, _assertion("exists"))
    extract = await client.block(workflow_id, type="extract")
    await _add_test(client, workflow_id, extract["id"], {}, _assertion("exists"))
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    async with running(_pool(client)):
        run = await _finished(client, created["id"])
    assert {"passed": 0, "failed": 0, "blocked": 2} == run["counts"]["outcome"]
    page = await client.call("GET", RESULTS, expect=200, run_id=created["id"], order="asc")
    failures = [r["assertion_result"]["failure"] for r in page["data"]]
    assert ["block_execution_failed"] * 2 == [f["code"] for f in failures]
    assert "the model is not reachable" in failures[0]["message"]
    assert "BLOCK_RUNTIME_URL" in failures[1]["message"]
    assert all(r["handle_outputs"] is None for r in page["data"])


async def test_results_list_pages_in_run_order_and_is_scoped(client: ApiClient) -> None:
    """Results page by position in the run, both orders; other organisations get 404."""
    workflow_id, block_id = await _function_workflow(client)
    for n in range(5):
        await _add_test(client, workflow_id, block_id, {"name": f"v{n}"}, _assertion("exists"))
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    walked: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"run_id": created["id"], "limit": 2, "order": "asc"}
        if after:
            params["after"] = after
        page = await client.call("GET", RESULTS, expect=200, **params)
        walked += [r["id"] for r in page["data"]]
        after = page["list_metadata"]["after"]
        if after is None:
            break
    assert 5 == len(set(walked))
    newest_first = await client.call("GET", RESULTS, expect=200, run_id=created["id"])
    assert list(reversed(walked)) == [r["id"] for r in newest_first["data"]]
    assert all({"status": "queued"} == r["lifecycle"] for r in newest_first["data"])
    await client.call("GET", RESULTS, expect=422)
    await client.call("GET", RESULTS, expect=404, run_id="wftestrun_nope")
    await client.call("GET", RESULTS, expect=404, run_id=created["id"], key=OTHER_API_KEY)
    await client.call("GET", f"{RESULTS}/{walked[0]}", expect=404, key=OTHER_API_KEY)
    await client.call("GET", f"{RESULTS}/wfnodetestrun_nope", expect=404)


async def test_cancel_stops_new_starts_and_answers_404_when_terminal(client: ApiClient) -> None:
    """Cancel a pending run: 200 cancelled, every test cancelled; again, or unknown: 404."""
    workflow_id, block_id = await _function_workflow(client)
    for n in range(3):
        await _add_test(client, workflow_id, block_id, {"name": n}, _assertion("exists"))
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    await client.call("POST", f"{RUNS}/{created['id']}/cancel", expect=404, key=OTHER_API_KEY)
    cancelled = await client.call("POST", f"{RUNS}/{created['id']}/cancel", expect=200)
    assert "cancelled" == cancelled["lifecycle"]["status"]
    assert 3 == cancelled["counts"]["cancelled"]
    assert cancelled["timing"]["completed_at"] is not None
    again = await client.call("POST", f"{RUNS}/{created['id']}/cancel", expect=404)
    assert "run_not_cancellable" == again["detail"]["code"]
    await client.call("POST", f"{RUNS}/wftestrun_nope/cancel", expect=404)
    pool = _pool(client)
    assert 0 == await pool.fetchval("SELECT count(*) FROM test_queue")
    async with running(pool):
        await asyncio.sleep(0.3)
    events = await EventStore(pool).read_stream(f"run-{created['id']}")
    assert ["run.created", "run.cancelled"] == [e.type for e in events]


async def test_cancel_racing_completions_keeps_the_counts_whole(client: ApiClient) -> None:
    """Cancels at random moments of busy runs: the counts always sum to total_tests."""
    workflow_id, block_id = await _function_workflow(client, "tests.run_functions:slow_invoice")
    for n in range(30):
        await _add_test(
            client,
            workflow_id,
            block_id,
            {"name": "ACME", "delay": 0.01 * (n % 5)},
            _assertion("exists"),
        )
    pool = _pool(client)
    rng = random.Random(7)
    async with running(pool, msgspec.structs.replace(CONFIG, runner_batch=4)):
        for _ in range(6):
            created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
            await asyncio.sleep(rng.uniform(0, 0.25))
            response = await client.http.post(
                f"{RUNS}/{created['id']}/cancel",
                headers={"Authorization": "Bearer rtk_test_key_organisation_a"},
            )
            assert response.status in (200, 404)

            async def settled(run_id: str = created["id"]) -> bool:
                queued = await pool.fetchval(
                    "SELECT count(*) FROM test_queue WHERE run_id = $1", run_id
                )
                return bool(queued == 0)

            await until(settled)
            run = await client.call("GET", f"{RUNS}/{created['id']}", expect=200)
            lifecycle, outcome = run["counts"]["lifecycle_counts"], run["counts"]["outcome"]
            assert 30 == sum(lifecycle.values())
            assert lifecycle["completed"] == sum(outcome.values())
            assert 0 == lifecycle["running"] + lifecycle["queued"] + lifecycle["pending"]
            assert run["lifecycle"]["status"] in ("cancelled", "completed")
            events = await EventStore(pool).read_stream(f"run-{created['id']}")
            types = [e.type for e in events]
            if "run.cancelled" in types:
                after_cancel = types[types.index("run.cancelled") :]
                assert "test.started" not in after_cancel
                assert "run.completed" not in after_cancel


async def test_an_expired_lease_makes_the_test_run_again(client: ApiClient) -> None:
    """A runner that claimed a test and died: once its lease ends, another runner finishes it."""
    workflow_id, block_id = await _function_workflow(client)
    await _add_test(client, workflow_id, block_id, {"name": "ACME"}, _assertion(expected="ACME"))
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    pool = _pool(client)
    dead = await queue.claim(pool, "dead-runner", 10, lease_seconds=0.3)
    assert 1 == len(dead)
    async with running(pool):
        run = await _finished(client, created["id"])
    assert "completed" == run["lifecycle"]["status"]
    assert 1 == run["counts"]["passed"]
    attempts = await pool.fetchval(
        "SELECT max((data->>'attempt')::int) FROM events WHERE type = 'test.started'"
    )
    assert 2 == attempts


async def test_a_test_whose_runners_keep_dying_is_errored(client: ApiClient) -> None:
    """Past MAX_ATTEMPTS claims that never finished, the test is `error` and the run completes."""
    workflow_id, block_id = await _function_workflow(client)
    await _add_test(client, workflow_id, block_id, {"name": "ACME"}, _assertion("exists"))
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    pool = _pool(client)
    for attempt in range(CONFIG.max_attempts):
        await pool.execute("UPDATE test_queue SET available_at = now()")
        assert 1 == len(await queue.claim(pool, f"dead-{attempt}", 10, lease_seconds=60))
    await pool.execute("UPDATE test_queue SET available_at = now()")
    async with running(pool):
        run = await _finished(client, created["id"])
    assert "completed" == run["lifecycle"]["status"]
    assert 1 == run["counts"]["error"]
    assert 1 == run["counts"]["lifecycle_counts"]["error"]
    page = await client.call("GET", RESULTS, expect=200, run_id=created["id"])
    assert "error" == page["data"][0]["lifecycle"]["status"]
    assert "attempts" in page["data"][0]["lifecycle"]["message"]


async def test_infrastructure_errors_are_retried_then_errored(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected failure outside the block is retried with backoff, then `test.errored`."""
    workflow_id, block_id = await _function_workflow(client)
    await _add_test(client, workflow_id, block_id, {"name": "ACME"}, _assertion("exists"))
    await _add_test(client, workflow_id, block_id, {"name": "flaky"}, _assertion("exists"))
    calls: dict[str, int] = {}
    original = Runner._evaluate

    async def failing(self: Runner, task: Any) -> Any:
        calls[task.result_id] = calls.get(task.result_id, 0) + 1
        name = task.handle_inputs["input"]["data"]["name"]
        if name == "ACME" or (name == "flaky" and calls[task.result_id] < 2):
            msg = "database hiccup"
            raise ConnectionResetError(msg)
        return await original(self, task)

    monkeypatch.setattr(Runner, "_evaluate", failing)
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    async with running(_pool(client)):
        run = await _finished(client, created["id"])
    assert "completed" == run["lifecycle"]["status"]
    assert {"error": 1, "passed": 1} == {
        "error": run["counts"]["error"],
        "passed": run["counts"]["passed"],
    }
    assert sorted([CONFIG.max_attempts, 2]) == sorted(calls.values())


async def test_a_block_slower_than_the_timeout_is_blocked(client: ApiClient) -> None:
    """A block still running at TEST_TIMEOUT_S is stopped: `blocked`, saying so."""
    workflow_id, block_id = await _function_workflow(client, "tests.run_functions:slow_invoice")
    await _add_test(
        client, workflow_id, block_id, {"name": "ACME", "delay": 5}, _assertion("exists")
    )
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    fast = msgspec.structs.replace(CONFIG, test_timeout_s=0.2)
    started = asyncio.get_running_loop().time()
    async with running(_pool(client), fast):
        run = await _finished(client, created["id"])
    assert asyncio.get_running_loop().time() - started < 4
    assert 1 == run["counts"]["blocked"]
    page = await client.call("GET", RESULTS, expect=200, run_id=created["id"])
    failure = page["data"][0]["assertion_result"]["failure"]
    assert "block_execution_failed" == failure["code"]
    assert "0.2 s" in failure["message"]


async def test_api_call_and_block_runtime_blocks_run_through_real_servers(
    client: ApiClient, aiohttp_server_factory: Any
) -> None:
    """An api_call block and an `extract` block (the operator's runtime) run end to end."""
    from aiohttp import web

    async def vendor_api(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"vendor": {"name": body["input"]["name"].upper()}})

    async def runtime(request: web.Request) -> web.Response:
        body = await request.json()
        assert "extract" == body["block"]["type"]
        name = body["handle_inputs"]["input"]["name"]
        return web.json_response({"handle_outputs": {"output-json-0": {"vendor": {"name": name}}}})

    api = await aiohttp_server_factory("/vendor", vendor_api)
    blocks = await aiohttp_server_factory("/run", runtime)
    workflow = await client.workflow()
    call = await client.block(
        workflow["id"],
        type="api_call",
        config={"method": "POST", "url": f"{api}/vendor", "timeout_s": 5},
    )
    extract = await client.block(workflow["id"], type="extract", config={"model": "m"})
    await _add_test(
        client, workflow["id"], call["id"], {"name": "acme"}, _assertion(expected="ACME")
    )
    await _add_test(
        client, workflow["id"], extract["id"], {"name": "Beta"}, _assertion(expected="Beta")
    )
    created = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    config = msgspec.structs.replace(CONFIG, block_runtime_url=f"{blocks}/run")
    async with running(_pool(client), config):
        run = await _finished(client, created["id"])
    assert {"passed": 2, "failed": 0, "blocked": 0} == run["counts"]["outcome"]
