"""Every `client.workflows.tests.*` call of the official SDK (retab==0.0.155), end to end.

A live server (`python -m service serve`) on a fresh database runs `function`
blocks in process (`FUNCTION_MODULES=tests.run_functions`), so runs really
execute and complete. Each scenario runs twice: once with the SDK as shipped
(it sends `Api-Key`), once with the client switched to `Authorization: Bearer`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from retab import Retab
from retab.exceptions import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from retab.types.pagination import PaginatedList
from retab.types.workflows.blocks import WorkflowBlock
from retab.types.workflows.tests import (
    EqualCondition,
    LatestBlockTestRunSummary,
    ManualWorkflowTestSource,
    StartWithCondition,
    WorkflowTest,
)
from retab.types.workflows.tests.results import WorkflowTestResult
from retab.types.workflows.tests.runs import WorkflowTestRun

from tests.acceptance.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

API_KEY = "rtk_sdk_full_acceptance_0123456789abcdef"
REPO_ROOT = str(Path(__file__).resolve().parents[2])
AUTH_MODES = ["Api-Key", "Authorization: Bearer"]
INVOICE = "tests.run_functions:invoice"
SLOW_INVOICE = "tests.run_functions:slow_invoice"
RUN_TIMEOUT_S = 30.0
TERMINAL = ("completed", "error", "cancelled")


# Fixtures -------------------------------------------------------------------


@pytest.fixture
def base_url(database_url: str) -> Iterator[str]:
    """A live server that executes `function` blocks from tests.run_functions."""
    process, url = start_server(
        database_url,
        FUNCTION_MODULES="tests.run_functions",
        PYTHONPATH=REPO_ROOT,
        BOOTSTRAP_API_KEY=API_KEY,
    )
    try:
        yield url
    finally:
        assert 0 == stop_server(process)


def _client(base_url: str, key: str, auth: str) -> Retab:
    client = Retab(api_key=key, base_url=base_url, max_retries=0, timeout=15)
    if auth.startswith("Authorization"):
        del client.headers["Api-Key"]
        client.headers["Authorization"] = f"Bearer {key}"
    return client


@pytest.fixture(params=AUTH_MODES)
def auth(request: pytest.FixtureRequest) -> str:
    """Which header carries the key: the SDK's own `Api-Key`, or `Authorization: Bearer`."""
    mode: str = request.param
    return mode


@pytest.fixture
def client(base_url: str, auth: str) -> Iterator[Retab]:
    """An SDK client of the live server; every request it sends uses only the chosen header."""
    sdk = _client(base_url, API_KEY, auth)
    sent: list[httpx.Headers] = []
    sdk.client.event_hooks["request"] = [lambda request: sent.append(request.headers)]
    yield sdk
    sdk.client.close()
    assert sent
    for headers in sent:
        if auth == "Api-Key":
            assert API_KEY == headers.get("api-key")
            assert "authorization" not in headers
        else:
            assert f"Bearer {API_KEY}" == headers.get("authorization")
            assert "api-key" not in headers


# Helpers --------------------------------------------------------------------


def _workflow(client: Retab, name: str = "Invoices") -> str:
    workflow = client.workflows.create(project_id="proj_sdk_full", name=name)
    assert workflow.id.startswith("wf_")
    assert name == workflow.name
    return workflow.id


def _function_block(
    client: Retab, workflow_id: str, entrypoint: str = INVOICE, block_id: str | None = None
) -> WorkflowBlock:
    block = client.workflows.blocks.create(
        workflow_id=workflow_id, type="function", id=block_id, config={"entrypoint": entrypoint}
    )
    assert isinstance(block, WorkflowBlock)
    assert workflow_id == block.workflow_id
    assert "function" == block.type.value
    assert {"entrypoint": entrypoint} == block.config
    return block


def _source(data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "manual", "handle_inputs": {"input": {"type": "json", "data": data}}}


def _equals(expected: Any, path: str = "vendor.name", handle: str = "output-json-0") -> Any:
    return {
        "target": {"output_handle_id": handle, "path": path},
        "condition": {"kind": "equals", "expected": expected},
    }


def _saved_test(
    client: Retab,
    workflow_id: str,
    block_id: str,
    *,
    vendor: str = "ACME",
    expected: Any = "ACME",
    name: str | None = None,
    handle: str = "output-json-0",
    extra: dict[str, Any] | None = None,
) -> WorkflowTest:
    return client.workflows.tests.create(
        workflow_id=workflow_id,
        target={"type": "block", "block_id": block_id},
        source=_source({"name": vendor, "total": 12, **(extra or {})}),
        assertion=_equals(expected, handle=handle),
        name=name,
    )


def _wait(client: Retab, run_id: str, status: str = "completed") -> WorkflowTestRun:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    run = client.workflows.tests.runs.get(run_id)
    while run.lifecycle.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.05)
        run = client.workflows.tests.runs.get(run_id)
    assert status == run.lifecycle.status, run
    return run


def _wait_for_summary(client: Retab, test_id: str, result_id: str) -> WorkflowTest:
    """The test once its latest-run summary shows the finished result (an asynchronous
    projection: it may lag behind, or first show the result still running)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    test = client.workflows.tests.get(test_id)
    while time.monotonic() < deadline:
        summary = test.latest_run_summary
        if summary and result_id == summary.run_record_id and summary.status.value in TERMINAL:
            break
        time.sleep(0.05)
        test = client.workflows.tests.get(test_id)
    return test


def _check_counts(run: WorkflowTestRun) -> None:
    """Each test in one lifecycle bucket; each completed test in one outcome bucket."""
    assert run.counts is not None
    assert run.counts.lifecycle_counts is not None
    assert run.counts.outcome is not None
    lifecycle = run.counts.lifecycle_counts
    outcome = run.counts.outcome
    assert run.total_tests == sum(
        value or 0
        for value in (
            lifecycle.pending,
            lifecycle.queued,
            lifecycle.running,
            lifecycle.completed,
            lifecycle.error,
            lifecycle.cancelled,
        )
    )
    assert (lifecycle.completed or 0) == sum(
        value or 0 for value in (outcome.passed, outcome.failed, outcome.blocked)
    )


def _check_completed_timing(run: WorkflowTestRun) -> None:
    timing = run.timing
    assert timing.created_at is not None
    assert timing.started_at is not None
    assert timing.completed_at is not None
    assert timing.duration_ms is not None
    assert timing.created_at <= timing.started_at <= timing.completed_at
    elapsed = (timing.completed_at - timing.started_at) / timedelta(milliseconds=1)
    assert abs(elapsed - timing.duration_ms) <= 1
    for moment in (timing.created_at, timing.started_at, timing.completed_at):
        assert timedelta(0) == moment.utcoffset()


def _ids(items: Any) -> list[str]:
    return [item.id for item in items]


# Saved tests ----------------------------------------------------------------


def test_saved_tests_are_created_listed_read_updated_and_deleted(client: Retab) -> None:
    """Saved tests are created, listed, read, renamed, re-asserted, re-sourced and deleted as
    typed WorkflowTests; the runs and results of a deleted test stay readable."""
    workflow_id = _workflow(client)
    block = _function_block(client, workflow_id)
    other_block = _function_block(client, workflow_id)
    assert block.id != other_block.id

    first = _saved_test(client, workflow_id, block.id, name="vendor is ACME")
    assert isinstance(first, WorkflowTest)
    assert first.id.startswith("wfnodetest_")
    assert workflow_id == first.workflow_id
    assert "block" == first.target.type
    assert block.id == first.target.block_id
    assert "vendor is ACME" == first.name
    assert isinstance(first.source, ManualWorkflowTestSource)
    assert first.source.handle_inputs is not None
    assert {"name": "ACME", "total": 12} == first.source.handle_inputs["input"].data
    assert first.assertion is not None
    assert "output-json-0" == first.assertion.target.output_handle_id
    assert "vendor.name" == first.assertion.target.path
    assert isinstance(first.assertion.condition, EqualCondition)
    assert "ACME" == first.assertion.condition.expected
    assert first.assertion.id is not None
    assert first.assertion.id.startswith("assert_")
    assert first.created_at is not None
    assert first.updated_at is not None
    assert first.latest_run_summary is None
    assert first.latest_passing_run_summary is None
    assert first.latest_failing_run_summary is None

    second = _saved_test(client, workflow_id, block.id, name="second")
    third = _saved_test(client, workflow_id, other_block.id, name="on the other block")

    listed = client.workflows.tests.list(workflow_id=workflow_id)
    assert isinstance(listed, PaginatedList)
    assert [third.id, second.id, first.id] == _ids(listed.data)
    assert all(isinstance(test, WorkflowTest) for test in listed.data)
    assert not listed.has_more
    assert [first.id, second.id, third.id] == _ids(
        client.workflows.tests.list(workflow_id=workflow_id, order="asc").data
    )
    by_block = client.workflows.tests.list(workflow_id=workflow_id, target_block_id=other_block.id)
    assert [third.id] == _ids(by_block.data)
    assert other_block.id == by_block.data[0].target.block_id

    fetched = client.workflows.tests.get(first.id)
    assert isinstance(fetched, WorkflowTest)
    assert first.model_dump(exclude={"freshness", "drift"}) == fetched.model_dump(
        exclude={"freshness", "drift"}
    )

    renamed = client.workflows.tests.update(first.id, name="renamed")
    assert "renamed" == renamed.name
    assert first.assertion == renamed.assertion
    assert first.source == renamed.source
    assert first.target == renamed.target
    assert first.created_at == renamed.created_at
    assert renamed.updated_at is not None
    assert first.updated_at is not None
    assert renamed.updated_at >= first.updated_at

    reasserted = client.workflows.tests.update(
        first.id,
        assertion={
            "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
            "condition": {"kind": "starts_with", "expected": "AC"},
            "label": "vendor prefix",
        },
    )
    assert "renamed" == reasserted.name
    assert reasserted.assertion is not None
    assert isinstance(reasserted.assertion.condition, StartWithCondition)
    assert "AC" == reasserted.assertion.condition.expected
    assert "vendor prefix" == reasserted.assertion.label
    assert first.source == reasserted.source

    resourced = client.workflows.tests.update(first.id, source=_source({"name": "ACME Corp"}))
    assert isinstance(resourced.source, ManualWorkflowTestSource)
    assert resourced.source.handle_inputs is not None
    assert {"name": "ACME Corp"} == resourced.source.handle_inputs["input"].data
    assert reasserted.assertion == resourced.assertion
    assert "renamed" == resourced.name
    assert resourced.model_dump(exclude={"freshness", "drift"}) == client.workflows.tests.get(
        first.id
    ).model_dump(exclude={"freshness", "drift"})

    run = client.workflows.tests.runs.create(
        workflow_id=workflow_id, scope={"type": "single", "test_id": first.id}
    )
    run = _wait(client, run.id)
    [result] = client.workflows.tests.results.list(run_id=run.id).data
    assert "passed" == result.verdict
    summarised = _wait_for_summary(client, first.id, result.id)
    assert isinstance(summarised.latest_run_summary, LatestBlockTestRunSummary)
    assert result.id == summarised.latest_run_summary.run_record_id
    assert "completed" == summarised.latest_run_summary.status.value
    assert summarised.latest_run_summary.outcome is not None
    assert "passed" == summarised.latest_run_summary.outcome.value
    assert summarised.latest_passing_run_summary is not None
    assert result.id == summarised.latest_passing_run_summary.run_record_id
    assert summarised.latest_failing_run_summary is None

    assert client.workflows.tests.delete(first.id) is None
    with pytest.raises(NotFoundError):
        client.workflows.tests.get(first.id)
    with pytest.raises(NotFoundError):
        client.workflows.tests.delete(first.id)
    with pytest.raises(NotFoundError):
        client.workflows.tests.update(first.id, name="gone")
    assert [third.id, second.id] == _ids(client.workflows.tests.list(workflow_id=workflow_id))

    kept = client.workflows.tests.runs.get(run.id)
    assert "completed" == kept.lifecycle.status
    assert first.id == kept.test_id
    assert [run.id] == _ids(client.workflows.tests.runs.list(test_id=first.id))
    [kept_result] = client.workflows.tests.results.list(run_id=run.id).data
    assert result.id == kept_result.id
    assert first.id == kept_result.test_id
    assert "passed" == client.workflows.tests.results.get(result.id).verdict


# Runs and results -----------------------------------------------------------


def test_runs_in_every_scope_complete_and_report_typed_results(client: Retab) -> None:
    """Runs created in every scope complete; reading and listing runs and results gives the
    same verdicts, counts, timing and handle values."""
    workflow_id = _workflow(client)
    block = _function_block(client, workflow_id)
    other_block = _function_block(client, workflow_id)
    passing = _saved_test(client, workflow_id, block.id, name="passes")
    failing = _saved_test(client, workflow_id, block.id, expected="Globex", name="fails")
    blocked = _saved_test(client, workflow_id, block.id, handle="output-json-9", name="blocked")
    elsewhere = _saved_test(
        client, workflow_id, other_block.id, vendor="Initech", expected="Initech"
    )
    verdicts = {passing.id: "passed", failing.id: "failed", blocked.id: "blocked"}
    verdicts[elsewhere.id] = "passed"

    omitted = client.workflows.tests.runs.create(workflow_id=workflow_id)
    assert isinstance(omitted, WorkflowTestRun)
    assert omitted.id.startswith("wftestrun_")
    assert workflow_id == omitted.workflow_id
    assert omitted.workflow_version_id
    assert "api" == omitted.trigger.type.value
    assert omitted.lifecycle.status in ("pending", "queued", "running", "completed")
    assert omitted.timing.created_at is not None
    assert omitted.test_id is None
    assert omitted.target is None
    assert 4 == omitted.total_tests
    _check_counts(omitted)

    whole = client.workflows.tests.runs.create(workflow_id=workflow_id, scope={"type": "workflow"})
    assert 4 == whole.total_tests
    assert whole.target is None
    single = client.workflows.tests.runs.create(
        workflow_id=workflow_id, scope={"type": "single", "test_id": failing.id}
    )
    assert 1 == single.total_tests
    assert failing.id == single.test_id
    assert single.target is not None
    assert block.id == single.target.block_id
    by_block = client.workflows.tests.runs.create(
        workflow_id=workflow_id, scope={"type": "block", "block_id": block.id}
    )
    assert 3 == by_block.total_tests
    assert by_block.test_id is None
    assert by_block.target is not None
    assert block.id == by_block.target.block_id
    created = [omitted, whole, single, by_block]
    assert len(created) == len({run.id for run in created})
    assert {omitted.workflow_version_id} == {run.workflow_version_id for run in created}

    finished = {run.id: _wait(client, run.id) for run in created}
    for run in finished.values():
        assert isinstance(run, WorkflowTestRun)
        _check_counts(run)
        _check_completed_timing(run)
        assert run.counts is not None
        assert run.counts.lifecycle_counts is not None
        assert run.total_tests == run.counts.lifecycle_counts.completed
        assert run.freshness is not None
        assert "fresh" == run.freshness.status.value
    for run_id in (omitted.id, whole.id):
        counts = finished[run_id].counts
        assert counts is not None
        assert counts.outcome is not None
        assert (2, 1, 1) == (counts.outcome.passed, counts.outcome.failed, counts.outcome.blocked)
    single_counts = finished[single.id].counts
    assert single_counts is not None
    assert single_counts.outcome is not None
    assert 1 == single_counts.outcome.failed
    assert single.id == finished[single.id].id
    assert failing.id == finished[single.id].test_id

    newest_first = [by_block.id, single.id, whole.id, omitted.id]
    listed = client.workflows.tests.runs.list(workflow_id=workflow_id)
    assert newest_first == _ids(listed.data)
    assert all(isinstance(run, WorkflowTestRun) for run in listed.data)
    assert list(reversed(newest_first)) == _ids(
        client.workflows.tests.runs.list(workflow_id=workflow_id, order="asc").data
    )
    assert [by_block.id, whole.id, omitted.id] == _ids(
        client.workflows.tests.runs.list(workflow_id=workflow_id, test_id=passing.id).data
    )
    assert [whole.id, omitted.id] == _ids(
        client.workflows.tests.runs.list(test_id=elsewhere.id).data
    )
    assert newest_first == _ids(
        client.workflows.tests.runs.list(workflow_id=workflow_id, status="completed").data
    )
    assert [] == client.workflows.tests.runs.list(workflow_id=workflow_id, status="running").data
    assert newest_first == _ids(client.workflows.tests.runs.list(test_id=failing.id).data)
    assert [whole.id, omitted.id] == _ids(
        client.workflows.tests.runs.list(workflow_id=workflow_id, target_block_id=other_block.id)
    )

    results = client.workflows.tests.results.list(run_id=omitted.id)
    assert isinstance(results, PaginatedList)
    assert not results.has_more
    assert 4 == len(results.data)
    ascending = client.workflows.tests.results.list(run_id=omitted.id, order="asc")
    assert list(reversed(_ids(results.data))) == _ids(ascending.data)
    assert set(verdicts) == {result.test_id for result in results.data}
    for result in results.data:
        assert isinstance(result, WorkflowTestResult)
        assert result.id.startswith("wfnodetestrun_")
        assert omitted.id == result.workflow_test_run_id
        assert workflow_id == result.workflow_id
        assert "function" == result.block_type
        assert result.lifecycle is not None
        assert "completed" == result.lifecycle.status
        assert verdicts[result.test_id] == result.verdict
        assert result.assertion_result is not None
        assert result.verdict == result.assertion_result.outcome
        assert "equals" == result.assertion_result.condition_kind
        assert result.assertion_result.assertion_id.startswith("assert_")
        assert result.timing is not None
        assert result.timing.started_at is not None
        assert result.timing.completed_at is not None
        assert result.verdict_summary is not None
        assert (result.verdict == "passed") == result.verdict_summary.passed
        assert [] == result.warnings
        assert result.handle_inputs is not None
        assert result.handle_outputs is not None
        vendor = result.handle_inputs["input"].data["name"]
        assert {"name": vendor, "total": 12} == result.handle_inputs["input"].data
        assert "json" == result.handle_outputs["output-json-0"].type
        assert {"vendor": {"name": vendor}, "total": 12} == result.handle_outputs[
            "output-json-0"
        ].data
        assert result.model_dump() == client.workflows.tests.results.get(result.id).model_dump()

    by_test = {result.test_id: result for result in results.data}
    assert block.id == by_test[passing.id].block_id
    assert other_block.id == by_test[elsewhere.id].block_id
    passed_assertion = by_test[passing.id].assertion_result
    assert passed_assertion is not None
    assert passed_assertion.failure is None
    assert "ACME" == passed_assertion.actual_value
    failed_assertion = by_test[failing.id].assertion_result
    assert failed_assertion is not None
    assert "ACME" == failed_assertion.actual_value
    assert "Globex" == failed_assertion.expected_value
    assert failed_assertion.failure is not None
    assert "assertion_failed" == failed_assertion.failure.code
    failed_summary = by_test[failing.id].verdict_summary
    assert failed_summary is not None
    assert 1 == failed_summary.assertions_failed
    assert [failed_assertion.assertion_id] == failed_summary.failed_assertion_ids
    blocked_assertion = by_test[blocked.id].assertion_result
    assert blocked_assertion is not None
    assert blocked_assertion.failure is not None
    assert "missing_handle" == blocked_assertion.failure.code
    assert blocked_assertion.failure.message
    blocked_summary = by_test[blocked.id].verdict_summary
    assert blocked_summary is not None
    assert 1 == blocked_summary.blocked_assertions

    [single_result] = client.workflows.tests.results.list(run_id=single.id).data
    assert failing.id == single_result.test_id
    assert "failed" == single_result.verdict


def _cancel_and_check(client: Retab, run_id: str) -> WorkflowTestRun:
    """Cancel a live run and check the answer; a second cancel is a NotFoundError."""
    cancelled = client.workflows.tests.runs.cancel(run_id)
    assert isinstance(cancelled, WorkflowTestRun)
    assert run_id == cancelled.id
    assert "cancelled" == cancelled.lifecycle.status
    assert cancelled.lifecycle.reason
    assert cancelled.timing.completed_at is not None
    _check_counts(cancelled)
    assert cancelled.counts is not None
    assert cancelled.counts.lifecycle_counts is not None
    assert 0 == cancelled.counts.lifecycle_counts.pending
    assert 0 == cancelled.counts.lifecycle_counts.queued

    with pytest.raises(NotFoundError) as again:
        client.workflows.tests.runs.cancel(run_id)
    assert 404 == again.value.status_code
    assert "cancelled" == client.workflows.tests.runs.get(run_id).lifecycle.status
    return cancelled


def _settled(client: Retab, run_id: str) -> WorkflowTestRun:
    """The run once no test of it is running any more (tests in flight at cancel time finish)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    run = client.workflows.tests.runs.get(run_id)
    while time.monotonic() < deadline:
        assert run.counts is not None
        assert run.counts.lifecycle_counts is not None
        if 0 == run.counts.lifecycle_counts.running:
            break
        time.sleep(0.05)
        run = client.workflows.tests.runs.get(run_id)
    return run


def test_a_pending_or_running_run_is_cancelled_once(client: Retab) -> None:
    """Cancelling a run that has not finished answers it cancelled, for good; cancelling it a
    second time is a NotFoundError."""
    workflow_id = _workflow(client, "Slow invoices")
    block = _function_block(client, workflow_id, SLOW_INVOICE)
    for n in range(6):
        _saved_test(
            client, workflow_id, block.id, vendor=f"V{n}", expected=f"V{n}", extra={"delay": 0.5}
        )

    early = client.workflows.tests.runs.create(workflow_id=workflow_id)
    assert 6 == early.total_tests
    assert early.lifecycle.status in ("pending", "queued", "running")
    first = _cancel_and_check(client, early.id)

    late = client.workflows.tests.runs.create(workflow_id=workflow_id)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    seen = client.workflows.tests.runs.get(late.id)
    while seen.lifecycle.status in ("pending", "queued") and time.monotonic() < deadline:
        time.sleep(0.02)
        seen = client.workflows.tests.runs.get(late.id)
    assert "running" == seen.lifecycle.status
    assert seen.timing.started_at is not None
    _check_counts(seen)
    second = _cancel_and_check(client, late.id)
    assert seen.timing.started_at == second.timing.started_at

    for cancelled in (first, second):
        after = _settled(client, cancelled.id)
        assert "cancelled" == after.lifecycle.status
        assert cancelled.timing.completed_at == after.timing.completed_at
        _check_counts(after)
        assert after.counts is not None
        assert after.counts.lifecycle_counts is not None
        assert after.counts.outcome is not None
        results = list(client.workflows.tests.results.list(run_id=cancelled.id))
        assert 6 == len(results)
        statuses = [result.lifecycle.status for result in results if result.lifecycle]
        assert 6 == len(statuses)
        assert after.counts.lifecycle_counts.cancelled == statuses.count("cancelled")
        assert after.counts.lifecycle_counts.completed == statuses.count("completed")
        assert after.counts.outcome.passed == statuses.count("completed")
        for result in results:
            assert result.lifecycle is not None
            if "cancelled" == result.lifecycle.status:
                assert result.verdict is None
            else:
                assert "completed" == result.lifecycle.status
                assert "passed" == result.verdict
    assert [second.id, first.id] == _ids(
        client.workflows.tests.runs.list(workflow_id=workflow_id, status="cancelled")
    )
    assert [] == client.workflows.tests.runs.list(workflow_id=workflow_id, status="completed").data


# Pagination -----------------------------------------------------------------


def test_auto_paging_visits_every_item_exactly_once(client: Retab) -> None:
    """Listing tests, runs and results two at a time and auto-paging visits every item once,
    in order."""
    workflow_id = _workflow(client, "Many")
    block = _function_block(client, workflow_id)
    tests = [
        _saved_test(client, workflow_id, block.id, vendor=f"V{n}", expected=f"V{n}")
        for n in range(5)
    ]
    test_ids = [test.id for test in tests]

    first_page = client.workflows.tests.list(workflow_id=workflow_id, limit=2)
    assert 2 == len(first_page.data)
    assert first_page.has_more
    assert list(reversed(test_ids)) == _ids(first_page.auto_paging_iter())
    assert test_ids == _ids(
        client.workflows.tests.list(workflow_id=workflow_id, limit=2, order="asc")
    )

    runs = [
        client.workflows.tests.runs.create(
            workflow_id=workflow_id, scope={"type": "single", "test_id": test_id}
        )
        for test_id in test_ids
    ]
    whole = client.workflows.tests.runs.create(workflow_id=workflow_id)
    run_ids = [run.id for run in [*runs, whole]]
    run_page = client.workflows.tests.runs.list(workflow_id=workflow_id, limit=2)
    assert run_page.has_more
    assert list(reversed(run_ids)) == _ids(run_page.auto_paging_iter())
    assert run_ids == _ids(
        client.workflows.tests.runs.list(workflow_id=workflow_id, limit=2, order="asc")
    )

    _wait(client, whole.id)
    result_page = client.workflows.tests.results.list(run_id=whole.id, limit=2)
    assert result_page.has_more
    walked = list(result_page.auto_paging_iter())
    assert 5 == len(walked)
    assert len(walked) == len({result.id for result in walked})
    assert set(test_ids) == {result.test_id for result in walked}
    assert all("passed" == result.verdict for result in walked)
    assert _ids(client.workflows.tests.results.list(run_id=whole.id).data) == _ids(walked)


# Errors ---------------------------------------------------------------------


def test_errors_arrive_as_the_sdk_exception_classes(
    client: Retab, base_url: str, auth: str
) -> None:
    """Unknown ids, invalid requests, a block id already taken and a wrong key raise the SDK's
    NotFoundError, ValidationError, ConflictError and AuthenticationError."""
    workflow_id = _workflow(client)
    block = _function_block(client, workflow_id, block_id="block_x")
    assert "block_x" == block.id

    with pytest.raises(NotFoundError) as missing_run:
        client.workflows.tests.runs.get("wftestrun_missing")
    assert 404 == missing_run.value.status_code
    assert "run_not_found" == missing_run.value.code
    assert "wftestrun_missing" in missing_run.value.message
    with pytest.raises(NotFoundError):
        client.workflows.tests.runs.cancel("wftestrun_missing")
    with pytest.raises(NotFoundError) as missing_test:
        client.workflows.tests.get("wfnodetest_missing")
    assert 404 == missing_test.value.status_code
    with pytest.raises(NotFoundError):
        client.workflows.tests.runs.create(
            workflow_id=workflow_id, scope={"type": "single", "test_id": "wfnodetest_missing"}
        )
    with pytest.raises(NotFoundError) as missing_result:
        client.workflows.tests.results.get("wfnodetestrun_missing")
    assert 404 == missing_result.value.status_code
    with pytest.raises(NotFoundError):
        client.workflows.tests.list(workflow_id="wf_missing")

    with pytest.raises(ValidationError) as no_tests:
        client.workflows.tests.runs.create(workflow_id=workflow_id)
    assert 422 == no_tests.value.status_code
    with pytest.raises(ValidationError) as bad_condition:
        client.workflows.tests.create(
            workflow_id=workflow_id,
            target={"type": "block", "block_id": block.id},
            source=_source({"name": "ACME"}),
            assertion={
                "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
                "condition": {"kind": "similarity_gte", "reference": "ACME", "threshold": 1.5},
            },
        )
    assert 422 == bad_condition.value.status_code
    assert [] == client.workflows.tests.list(workflow_id=workflow_id).data

    with pytest.raises(ConflictError) as taken:
        client.workflows.blocks.create(workflow_id=workflow_id, type="function", id="block_x")
    assert 409 == taken.value.status_code
    other_workflow = _workflow(client, "Other")
    with pytest.raises(ConflictError):
        client.workflows.blocks.create(workflow_id=other_workflow, type="function", id="block_x")

    stranger = _client(base_url, "rtk_not_a_key", auth)
    try:
        with pytest.raises(AuthenticationError) as refused:
            stranger.workflows.tests.runs.get("wftestrun_missing")
        assert 401 == refused.value.status_code
        with pytest.raises(AuthenticationError):
            stranger.workflows.tests.list(workflow_id=workflow_id)
        with pytest.raises(AuthenticationError):
            stranger.workflows.tests.runs.create(workflow_id=workflow_id)
    finally:
        stranger.client.close()
