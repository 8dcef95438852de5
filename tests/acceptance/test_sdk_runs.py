"""The official SDK (retab==0.0.155) creates and reads runs against a live server, unchanged."""

from __future__ import annotations

import pytest
from retab import Retab
from retab.exceptions import AuthenticationError, NotFoundError, ValidationError
from retab.types.workflows.tests.runs import WorkflowTestRun

from tests.acceptance.conftest import LiveServer, start_server, stop_server


def _populate(client: Retab) -> tuple[str, str, str]:
    workflow = client.workflows.create(project_id="proj_acceptance", name="Invoices")
    block = client.workflows.blocks.create(
        workflow_id=workflow.id, type="extract", id="block_extract_invoice"
    )
    test = client.workflows.tests.create(
        workflow_id=workflow.id,
        target={"type": "block", "block_id": block.id},
        source={"type": "manual", "handle_inputs": {"in": {"type": "json", "data": {"n": 1}}}},
        assertion={
            "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
            "condition": {"kind": "equals", "expected": "ACME"},
        },
        name="vendor is ACME",
    )
    return workflow.id, block.id, test.id


@pytest.mark.parametrize("header", ["Api-Key", "Authorization: Bearer"])
def test_sdk_creates_and_gets_runs(live_server: LiveServer, header: str) -> None:
    """runs.create in every scope form and runs.get return typed runs with the seed fields."""
    client = Retab(api_key=live_server.api_key, base_url=live_server.base_url, max_retries=0)
    if header.startswith("Authorization"):
        del client.headers["Api-Key"]
        client.headers["Authorization"] = f"Bearer {live_server.api_key}"
    workflow_id, block_id, test_id = _populate(client)

    single = client.workflows.tests.runs.create(
        workflow_id=workflow_id, scope={"type": "single", "test_id": test_id}
    )
    assert isinstance(single, WorkflowTestRun)
    assert "pending" == single.lifecycle.status
    assert test_id == single.test_id
    assert single.target is not None
    assert block_id == single.target.block_id
    assert 1 == single.total_tests
    assert single.counts is not None
    assert single.counts.lifecycle_counts is not None
    assert 1 == single.counts.lifecycle_counts.queued
    for scope in (None, {"type": "workflow"}, {"type": "block", "block_id": block_id}):
        run = client.workflows.tests.runs.create(workflow_id=workflow_id, scope=scope)
        assert 1 == run.total_tests

    fetched = client.workflows.tests.runs.get(single.id)
    assert single.id == fetched.id
    assert workflow_id == fetched.workflow_id
    assert single.workflow_version_id == fetched.workflow_version_id
    assert fetched.timing.created_at is not None
    assert fetched.freshness is not None
    assert "fresh" == fetched.freshness.status


def test_sdk_errors_arrive_as_its_exception_classes(live_server: LiveServer) -> None:
    """Not found, validation and authentication errors map to the SDK's own exceptions."""
    client = Retab(api_key=live_server.api_key, base_url=live_server.base_url, max_retries=0)
    workflow_id, _, _ = _populate(client)
    with pytest.raises(NotFoundError):
        client.workflows.tests.runs.get("wftestrun_missing")
    with pytest.raises(NotFoundError):
        client.workflows.tests.runs.create(
            workflow_id=workflow_id, scope={"type": "single", "test_id": "wfnodetest_missing"}
        )
    empty = client.workflows.create(project_id="proj_acceptance", name="empty")
    with pytest.raises(ValidationError):
        client.workflows.tests.runs.create(workflow_id=empty.id)
    stranger = Retab(api_key="rtk_not_a_key", base_url=live_server.base_url, max_retries=0)
    with pytest.raises(AuthenticationError):
        stranger.workflows.tests.runs.get("wftestrun_missing")


def test_first_start_prints_a_key_once_and_a_restart_keeps_the_data(
    live_server: LiveServer, database_url: str
) -> None:
    """A restart prints no new key; the first key and the runs made with it still work."""
    client = Retab(api_key=live_server.api_key, base_url=live_server.base_url, max_retries=0)
    workflow_id, _, _ = _populate(client)
    run = client.workflows.tests.runs.create(workflow_id=workflow_id)
    assert 0 == stop_server(live_server.process)

    process, base_url = start_server(database_url)
    try:
        again = Retab(api_key=live_server.api_key, base_url=base_url, max_retries=0)
        assert run.id == again.workflows.tests.runs.get(run.id).id
    finally:
        assert 0 == stop_server(process)
    assert process.stdout is not None
    assert "API key" not in process.stdout.read()
