"""The seed endpoints: create a run (every scope form) and get it, over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from tests.helpers import OTHER_API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"

# Every field of the reference pages' examples (seeds/000 and seeds/001).
SEED_RUN_FIELDS = {
    "id", "workflow", "trigger", "lifecycle", "timing", "test_id", "target", "total_tests",
    "counts",
}  # fmt: skip
SEED_COUNT_FIELDS = {"queued", "running", "passed", "failed", "blocked", "error", "cancelled"}


async def _setup(client: ApiClient) -> dict[str, Any]:
    workflow = await client.workflow()
    extract = await client.block(workflow["id"], id="block_extract_invoice")
    classify = await client.block(workflow["id"], type="classifier")
    tests = [
        await client.test(workflow["id"], extract["id"], name="vendor"),
        await client.test(workflow["id"], extract["id"], name="total"),
        await client.test(workflow["id"], classify["id"], name="kind"),
    ]
    return {"workflow": workflow, "extract": extract, "classify": classify, "tests": tests}


async def test_create_single_returns_every_field_of_the_create_page(client: ApiClient) -> None:
    """The create answer has every field of the first seed page's example, pending and queued."""
    world = await _setup(client)
    test = world["tests"][0]
    run = await client.call(
        "POST",
        RUNS,
        {
            "workflow_id": world["workflow"]["id"],
            "scope": {"type": "single", "test_id": test["id"]},
        },
        expect=202,
    )
    assert SEED_RUN_FIELDS <= set(run)
    assert {"created_at", "started_at", "completed_at"} <= set(run["timing"])
    assert SEED_COUNT_FIELDS <= set(run["counts"])
    assert run["id"].startswith("wftestrun_")
    assert {"status": "pending"} == run["lifecycle"]
    assert {"type": "api"} == run["trigger"]
    assert test["id"] == run["test_id"]
    assert {"type": "block", "block_id": "block_extract_invoice"} == run["target"]
    assert 1 == run["total_tests"]
    assert {
        "queued": 1, "running": 0, "passed": 0, "failed": 0, "blocked": 0, "error": 0,
        "cancelled": 0,
    } == {k: run["counts"][k] for k in SEED_COUNT_FIELDS}  # fmt: skip
    assert {
        "pending": 0,
        "queued": 1,
        "running": 0,
        "completed": 0,
        "error": 0,
        "cancelled": 0,
    } == (run["counts"]["lifecycle_counts"])
    assert {"passed": 0, "failed": 0, "blocked": 0} == run["counts"]["outcome"]
    assert run["timing"]["created_at"].endswith("Z")
    assert run["timing"]["started_at"] is None
    assert run["timing"]["completed_at"] is None
    workflow = world["workflow"]
    assert workflow["id"] == run["workflow_id"] == run["workflow"]["workflow_id"]
    assert run["workflow_version_id"] == run["workflow"]["version_id"]


async def test_get_returns_every_field_of_the_get_page(client: ApiClient) -> None:
    """The get answer has every field of the second seed page's example, including duration_ms."""
    world = await _setup(client)
    created = await client.call("POST", RUNS, {"workflow_id": world["workflow"]["id"]}, expect=202)
    run = await client.call("GET", f"{RUNS}/{created['id']}", expect=200)
    assert SEED_RUN_FIELDS <= set(run)
    assert {"created_at", "started_at", "completed_at", "duration_ms"} <= set(run["timing"])
    assert SEED_COUNT_FIELDS <= set(run["counts"])
    assert {"lifecycle_counts", "outcome"} <= set(run["counts"])
    assert {
        "status",
        "reasons",
        "validity_fingerprint",
        "input_fingerprint",
        "baseline_run_id",
    } <= (set(run["freshness"]))
    assert created["id"] == run["id"]
    assert created["timing"] == run["timing"]
    assert created["counts"] == run["counts"]


@pytest.mark.parametrize("scope", ["omitted", "null", "workflow"])
async def test_whole_workflow_scopes_select_every_test(client: ApiClient, scope: str) -> None:
    """An omitted, null or `workflow` scope runs every saved test; no test_id, no target."""
    world = await _setup(client)
    body: dict[str, Any] = {"workflow_id": world["workflow"]["id"]}
    if scope == "null":
        body["scope"] = None
    elif scope == "workflow":
        body["scope"] = {"type": "workflow"}
    run = await client.call("POST", RUNS, body, expect=202)
    assert 3 == run["total_tests"]
    assert 3 == run["counts"]["queued"]
    assert run["test_id"] is None
    assert run["target"] is None


async def test_block_scope_selects_that_blocks_tests(client: ApiClient) -> None:
    """A `block` scope runs every saved test of that block, and names the block as target."""
    world = await _setup(client)
    run = await client.call(
        "POST",
        RUNS,
        {
            "workflow_id": world["workflow"]["id"],
            "scope": {"type": "block", "block_id": world["extract"]["id"]},
        },
        expect=202,
    )
    assert 2 == run["total_tests"]
    assert {"type": "block", "block_id": world["extract"]["id"]} == run["target"]
    assert run["test_id"] is None


async def _count_runs(client: ApiClient) -> int:
    pool = client.http.server.app[_pool_key()]
    return int(await pool.fetchval("SELECT count(*) FROM events"))


def _pool_key() -> Any:
    from service.http.handlers.common import POOL

    return POOL


@pytest.mark.parametrize(
    ("scope", "status", "code"),
    [
        ({"type": "single", "test_id": "wfnodetest_unknown"}, 404, "test_not_found"),
        ({"type": "block", "block_id": "blk_unknown"}, 404, "block_not_found"),
    ],
)
async def test_unknown_test_or_block_is_404(
    client: ApiClient, scope: dict[str, str], status: int, code: str
) -> None:
    """A scope naming an unknown test or block answers 404 with its code and creates nothing."""
    world = await _setup(client)
    before = await _count_runs(client)
    body = {"workflow_id": world["workflow"]["id"], "scope": scope}
    error = await client.call("POST", RUNS, body, expect=status)
    assert code == error["detail"]["code"]
    assert before == await _count_runs(client)


async def test_unknown_workflow_is_404(client: ApiClient) -> None:
    """An unknown workflow answers 404 workflow_not_found."""
    error = await client.call("POST", RUNS, {"workflow_id": "wf_unknown"}, expect=404)
    assert "workflow_not_found" == error["detail"]["code"]
    assert "wf_unknown" in error["detail"]["message"]


async def test_test_of_another_workflow_is_404(client: ApiClient) -> None:
    """A single scope naming a test of another workflow is not found in this one."""
    world = await _setup(client)
    other = await client.workflow("other")
    body = {
        "workflow_id": other["id"],
        "scope": {"type": "single", "test_id": world["tests"][0]["id"]},
    }
    error = await client.call("POST", RUNS, body, expect=404)
    assert "test_not_found" == error["detail"]["code"]


async def test_scope_selecting_no_test_is_422(client: ApiClient) -> None:
    """A workflow with no test, or a block with none, is a 422 and creates nothing."""
    world = await _setup(client)
    empty_block = await client.block(world["workflow"]["id"], type="split")
    for body in (
        {"workflow_id": (await client.workflow("empty"))["id"]},
        {
            "workflow_id": world["workflow"]["id"],
            "scope": {"type": "block", "block_id": empty_block["id"]},
        },
    ):
        before = await _count_runs(client)
        error = await client.call("POST", RUNS, body, expect=422)
        assert ["body", "scope"] == error["detail"][0]["loc"]
        assert before == await _count_runs(client)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body"]),
        ({"workflow_id": 5}, ["body", "workflow_id"]),
        ({"workflow_id": "wf_x", "scope": {"type": "bogus"}}, ["body", "scope", "type"]),
        ({"workflow_id": "wf_x", "scope": {"type": "single"}}, ["body", "scope"]),
        (
            {"workflow_id": "wf_x", "scope": {"type": "single", "test_id": 7}},
            ["body", "scope", "test_id"],
        ),
        ({"workflow_id": "wf_x", "scope": "workflow"}, ["body", "scope"]),
        ([], ["body"]),
    ],
)
async def test_malformed_bodies_are_422_with_the_path(
    client: ApiClient, body: Any, loc: list[Any]
) -> None:
    """A malformed body is a 422 in FastAPI's format, naming where it is wrong."""
    error = await client.call("POST", RUNS, body, expect=422)
    problem = error["detail"][0]
    assert loc == problem["loc"][: len(loc)]
    assert {"loc", "msg", "type"} <= set(problem)


async def test_invalid_json_is_422(client: ApiClient) -> None:
    """Bytes that are not JSON (or not UTF-8) are a 422, never a 500."""
    for raw in (b"{not json", b"\xff\xfe\xfa", b""):
        response = await client.http.post(
            RUNS, data=raw, headers={"Authorization": "Bearer rtk_test_key_organisation_a"}
        )
        assert 422 == response.status
        assert "detail" in await response.json()


async def test_get_unknown_run_is_404(client: ApiClient) -> None:
    """An unknown run id answers 404 run_not_found in the SPEC's format."""
    error = await client.call("GET", f"{RUNS}/wftestrun_nope", expect=404)
    assert {"code": "run_not_found", "message": "Workflow test run not found: wftestrun_nope"} == (
        error["detail"]
    )


async def test_both_auth_headers_work_and_missing_or_unknown_keys_are_401(
    client: ApiClient,
) -> None:
    """`Authorization: Bearer` and `Api-Key` both authenticate; no key or a wrong one is 401."""
    await client.call("GET", "/v1/workflows", header="bearer", expect=200)
    await client.call("GET", "/v1/workflows", header="api-key", expect=200)
    missing = await client.call("GET", "/v1/workflows", key=None, expect=401)
    assert "unauthorized" == missing["detail"]["code"]
    await client.call("GET", "/v1/workflows", key="rtk_wrong", expect=401)
    await client.call("GET", f"{RUNS}/wftestrun_x", key=None, expect=401)


async def test_another_organisations_resources_are_404(client: ApiClient) -> None:
    """A key of another organisation sees none of this one's workflows, tests or runs."""
    world = await _setup(client)
    run = await client.call("POST", RUNS, {"workflow_id": world["workflow"]["id"]}, expect=202)
    await client.call("GET", f"{RUNS}/{run['id']}", key=OTHER_API_KEY, expect=404)
    await client.call(
        "GET", f"/v1/workflows/{world['workflow']['id']}", key=OTHER_API_KEY, expect=404
    )
    await client.call(
        "POST", RUNS, {"workflow_id": world["workflow"]["id"]}, key=OTHER_API_KEY, expect=404
    )
    await client.call(
        "GET", "/v1/workflows/tests", key=OTHER_API_KEY, expect=404,
        workflow_id=world["workflow"]["id"],
    )  # fmt: skip
    listed = await client.call("GET", "/v1/workflows", key=OTHER_API_KEY, expect=200)
    assert [] == listed["data"]
    block = {"workflow_id": world["workflow"]["id"], "type": "extract"}
    await client.call("POST", "/v1/workflows/blocks", block, key=OTHER_API_KEY, expect=404)


async def test_every_response_has_a_request_id(client: ApiClient) -> None:
    """X-Request-Id is on successes and errors; a sane incoming one is echoed."""
    await client.call("GET", "/v1/workflows", expect=200)
    first = client.last.headers["X-Request-Id"]
    await client.call("GET", "/v1/workflows", key=None, expect=401)
    second = client.last.headers["X-Request-Id"]
    # Made up when none is sent: 32 random hex digits, never the same twice.
    assert re.fullmatch("[0-9a-f]{32}", first)
    assert re.fullmatch("[0-9a-f]{32}", second)
    assert first != second
    response = await client.http.get("/nowhere", headers={"X-Request-Id": "abc-123"})
    assert 404 == response.status
    assert "abc-123" == response.headers["X-Request-Id"]
    assert "not_found" == (await response.json())["detail"]["code"]


async def test_logs_carry_the_request_id_and_never_the_key(client: ApiClient) -> None:
    """Each request's log line has its request id bound, and no API key anywhere."""
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        response = await client.http.get(
            "/v1/workflows",
            headers={
                "Authorization": "Bearer rtk_test_key_organisation_a",
                "X-Request-Id": "rid-1",
            },
        )
        assert 200 == response.status
    finally:
        structlog.reset_defaults()
    finished = [e for e in capture.entries if e["event"] == "request_finished"]
    assert finished
    assert "rid-1" == finished[-1]["request_id"]
    assert 200 == finished[-1]["status"]
    assert "rtk_test_key" not in repr(capture.entries)


async def test_the_run_is_stored_as_one_run_created_event(client: ApiClient) -> None:
    """Creating a run appends exactly `run.created` to stream run-<id>, with its snapshot."""
    from events.store import EventStore
    from events.types import RunCreated

    world = await _setup(client)
    run = await client.call("POST", RUNS, {"workflow_id": world["workflow"]["id"]}, expect=202)
    events = await EventStore(client.http.server.app[_pool_key()]).read_stream(f"run-{run['id']}")
    assert ["run.created"] == [e.type for e in events]
    created = events[0].event
    assert isinstance(created, RunCreated)
    assert [t["id"] for t in world["tests"]] == [t.test_id for t in created.tests]
    assert events[0].metadata.request_id == client.last.headers["X-Request-Id"]
    assert events[0].metadata.actor is not None
    assert events[0].metadata.actor.startswith("key_")


async def test_freshness_compares_the_run_with_the_current_draft(client: ApiClient) -> None:
    """Fresh after creation and after an unrelated block; stale once a tested block changes."""
    world = await _setup(client)
    run = await client.call("POST", RUNS, {"workflow_id": world["workflow"]["id"]}, expect=202)
    assert {"status": "fresh", "reasons": []} == {
        k: run["freshness"][k] for k in ("status", "reasons")
    }
    assert run["id"] == run["freshness"]["baseline_run_id"]
    await client.block(world["workflow"]["id"], type="note")  # a new revision, same tests
    again = await client.call("GET", f"{RUNS}/{run['id']}", expect=200)
    assert "fresh" == again["freshness"]["status"]
    pool = client.http.server.app[_pool_key()]
    # What a change of the block's config does (the registry bumps the revision with it).
    await pool.execute(
        "UPDATE blocks SET config_fingerprint = 'sha256:changed' WHERE id = $1",
        world["extract"]["id"],
    )
    await pool.execute("UPDATE workflows SET revision = revision + 1")
    stale = await client.call("GET", f"{RUNS}/{run['id']}", expect=200)
    assert {"status": "stale", "reasons": ["engine_changed"]} == {
        k: stale["freshness"][k] for k in ("status", "reasons")
    }
    await pool.execute(
        "UPDATE workflow_tests SET validity_fingerprint = 'sha256:changed',"
        " handle_inputs_fingerprint = 'sha256:changed' WHERE id = $1",
        world["tests"][0]["id"],
    )
    await pool.execute("UPDATE workflows SET revision = revision + 1")
    staler = await client.call("GET", f"{RUNS}/{run['id']}", expect=200)
    assert ["engine_changed", "inputs_changed", "validity_changed"] == (
        staler["freshness"]["reasons"]
    )


async def test_freshness_skips_the_comparison_while_the_revision_is_unchanged(
    client: ApiClient,
) -> None:
    """The revision gates the per-test comparison: no revision change, no comparison made."""
    world = await _setup(client)
    run = await client.call("POST", RUNS, {"workflow_id": world["workflow"]["id"]}, expect=202)
    pool = client.http.server.app[_pool_key()]
    await pool.execute("UPDATE blocks SET config_fingerprint = 'sha256:changed'")
    fetched = await client.call("GET", f"{RUNS}/{run['id']}", expect=200)
    assert "fresh" == fetched["freshness"]["status"]
    await pool.execute("UPDATE workflows SET revision = revision + 1")
    fetched = await client.call("GET", f"{RUNS}/{run['id']}", expect=200)
    assert "stale" == fetched["freshness"]["status"]
