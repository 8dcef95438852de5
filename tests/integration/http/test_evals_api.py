"""The `evals` route family (SDK 0.0.160) beside `tests` (0.0.155): one implementation.

Requests take either name (both at once must agree: 422 naming the JSON path);
responses carry both names; fixed paths are never taken for an id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.http.handlers.common import POOL
from tests.helpers import ApiClient

TESTS = "/v1/workflows/tests"
EVALS = "/v1/workflows/evals"
MIGRATION = Path(__file__).resolve().parents[3] / "projections" / "sql" / "0008_eval_names.sql"


async def _saved(client: ApiClient) -> tuple[str, str, dict[str, Any]]:
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    test = await client.test(workflow["id"], block["id"])
    return workflow["id"], block["id"], test


async def test_every_evals_route_serves_what_its_tests_twin_serves(client: ApiClient) -> None:
    """Create, list, get, update and delete under `evals` act on the same saved tests, and
    `evals/runs` and `evals/results` are never read as an eval id."""
    workflow_id, block_id, test = await _saved(client)
    body = {
        "workflow_id": workflow_id,
        "target": {"type": "block", "block_id": block_id},
        "source": {"type": "manual", "handle_inputs": {}},
        "assertion": {
            "target": {"output_handle_id": "output-json-0"},
            "condition": {"kind": "exists"},
        },
        "name": "made as an eval",
    }
    made = await client.call("POST", EVALS, body, expect=201)
    assert made["id"].startswith("wfnodetest_")
    listed = await client.call("GET", EVALS, expect=200, workflow_id=workflow_id)
    assert [made["id"], test["id"]] == [item["id"] for item in listed["data"]]
    assert listed == await client.call("GET", TESTS, expect=200, workflow_id=workflow_id)
    assert made == await client.call("GET", f"{TESTS}/{made['id']}", expect=200)
    renamed = await client.call("PATCH", f"{EVALS}/{made['id']}", {"name": "x"}, expect=200)
    assert "x" == renamed["name"]
    assert renamed == await client.call("GET", f"{EVALS}/{made['id']}", expect=200)
    await client.call("DELETE", f"{EVALS}/{made['id']}", expect=204)
    missing = await client.call("GET", f"{TESTS}/{made['id']}", expect=404)
    assert "test_not_found" == missing["detail"]["code"]

    run = await client.call("POST", f"{EVALS}/runs", {"workflow_id": workflow_id}, expect=202)
    as_eval = await client.call("GET", f"{EVALS}/runs/{run['id']}", expect=200)
    assert as_eval == await client.call("GET", f"{TESTS}/runs/{run['id']}", expect=200)
    assert run["id"] == as_eval["id"]
    page = await client.call("GET", f"{EVALS}/runs", expect=200, workflow_id=workflow_id)
    assert [run["id"]] == [item["id"] for item in page["data"]]
    results = await client.call("GET", f"{EVALS}/results", expect=200, run_id=run["id"])
    [result] = results["data"]
    assert result == await client.call("GET", f"{EVALS}/results/{result['id']}", expect=200)
    events = await client.call("GET", f"{EVALS}/runs/{run['id']}/events", expect=200)
    assert "run.created" == events["data"][0]["type"]
    cancelled = await client.call("POST", f"{EVALS}/runs/{run['id']}/cancel", expect=200)
    assert "cancelled" == cancelled["lifecycle"]["status"]
    # A fixed path's other methods are its own 405s, not an eval id's.
    await client.call("DELETE", f"{EVALS}/runs", expect=405)
    assert "GET" in client.last.headers["Allow"]
    # Without its required query, the list is a 422, never "eval not found: ...".
    needed = await client.call("GET", EVALS, expect=422)
    assert ["query", "workflow_id"] == needed["detail"][0]["loc"]


async def test_a_run_scope_takes_test_id_or_eval_id_and_both_must_agree(
    client: ApiClient,
) -> None:
    """`scope.eval_id` selects the test like `scope.test_id`; both equal is fine; different
    values, or neither, are a 422 at `body.scope`, and nothing is created."""
    workflow_id, _, test = await _saved(client)
    for scope in (
        {"type": "single", "eval_id": test["id"]},
        {"type": "single", "test_id": test["id"]},
        {"type": "single", "test_id": test["id"], "eval_id": test["id"]},
    ):
        for family in (TESTS, EVALS):
            run = await client.call(
                "POST", f"{family}/runs", {"workflow_id": workflow_id, "scope": scope}, expect=202
            )
            assert test["id"] == run["test_id"] == run["eval_id"]
            assert 1 == run["total_tests"] == run["total_evals"]
    before = await client.call("GET", f"{TESTS}/runs", expect=200, workflow_id=workflow_id)
    for scope in (
        {"type": "single", "test_id": test["id"], "eval_id": "wfnodetest_other"},
        {"type": "single"},
    ):
        refused = await client.call(
            "POST", f"{EVALS}/runs", {"workflow_id": workflow_id, "scope": scope}, expect=422
        )
        [problem] = refused["detail"]
        assert ["body", "scope"] == problem["loc"]
        assert "eval_id" in problem["msg"]
    after = await client.call("GET", f"{TESTS}/runs", expect=200, workflow_id=workflow_id)
    assert before == after


async def test_the_runs_list_filters_by_test_id_or_eval_id(client: ApiClient) -> None:
    """`eval_id` filters like `test_id`; both equal is fine; different values are a 422 at
    `query.eval_id`."""
    workflow_id, block_id, test = await _saved(client)
    other = await client.test(workflow_id, block_id)
    mine = await client.call(
        "POST",
        f"{EVALS}/runs",
        {"workflow_id": workflow_id, "scope": {"type": "single", "eval_id": test["id"]}},
        expect=202,
    )
    await client.call(
        "POST",
        f"{TESTS}/runs",
        {"workflow_id": workflow_id, "scope": {"type": "single", "test_id": other["id"]}},
        expect=202,
    )
    for family in (TESTS, EVALS):
        for filters in ({"eval_id": test["id"]}, {"test_id": test["id"], "eval_id": test["id"]}):
            page = await client.call("GET", f"{family}/runs", expect=200, **filters)
            assert [mine["id"]] == [run["id"] for run in page["data"]]
        refused = await client.call(
            "GET", f"{family}/runs", expect=422, test_id=test["id"], eval_id=other["id"]
        )
        assert ["query", "eval_id"] == refused["detail"][0]["loc"]


async def test_runs_results_and_summaries_carry_both_releases_names(client: ApiClient) -> None:
    """Every old name has its new twin with the same value: `eval_id`, `total_evals`,
    `workflow_eval_run_id`, `block_execution_fingerprint`."""
    workflow_id, _, test = await _saved(client)
    run = await client.call(
        "POST",
        f"{EVALS}/runs",
        {"workflow_id": workflow_id, "scope": {"type": "single", "eval_id": test["id"]}},
        expect=202,
    )
    [result] = (await client.call("GET", f"{EVALS}/results", expect=200, run_id=run["id"]))["data"]
    assert test["id"] == result["test_id"] == result["eval_id"]
    assert run["id"] == result["workflow_test_run_id"] == result["workflow_eval_run_id"]
    assert result["block_config_fingerprint"]
    assert result["block_config_fingerprint"] == result["block_execution_fingerprint"]
    assert result["artifact"] is None
    assert result["routing_decisions"] is None


async def test_the_migration_gives_rows_written_before_it_the_new_names(
    client: ApiClient,
) -> None:
    """A run and result rendered before 0008 (without the new names) read with both
    names once the migration has run, and a run still decodes and re-renders."""
    workflow_id, _, test = await _saved(client)
    run = await client.call(
        "POST",
        f"{TESTS}/runs",
        {"workflow_id": workflow_id, "scope": {"type": "single", "test_id": test["id"]}},
        expect=202,
    )
    pool = client.http.server.app[POOL]
    await pool.execute(
        "UPDATE test_runs SET resource = (resource::jsonb - 'eval_id' - 'total_evals')::json"
    )
    await pool.execute(
        "UPDATE test_results SET resource = (resource::jsonb - 'eval_id' - 'workflow_eval_run_id'"
        " - 'block_execution_fingerprint' - 'artifact' - 'routing_decisions')::json"
    )
    await pool.execute(
        "INSERT INTO test_run_summaries (test_id, organisation_id, latest)"
        " VALUES ('wfnodetest_old', 'org', '{\"block_config_fingerprint\": \"f\"}')"
    )
    assert await pool.fetchval("SELECT resource::jsonb ? 'total_evals' FROM test_runs") is False
    await pool.execute(MIGRATION.read_text())
    migrated = await client.call("GET", f"{EVALS}/runs/{run['id']}", expect=200)
    assert test["id"] == migrated["eval_id"] == migrated["test_id"]
    assert 1 == migrated["total_evals"]
    [result] = (await client.call("GET", f"{EVALS}/results", expect=200, run_id=run["id"]))["data"]
    assert run["id"] == result["workflow_eval_run_id"]
    assert result["block_config_fingerprint"] == result["block_execution_fingerprint"]
    summary = await pool.fetchval(
        "SELECT latest::jsonb->>'block_execution_fingerprint' FROM test_run_summaries"
        " WHERE test_id = 'wfnodetest_old'"
    )
    assert "f" == summary
