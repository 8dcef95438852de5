"""The run's commands: create a run (snapshot its tests, `run.created`) and cancel it."""

from __future__ import annotations

from typing import Literal

import asyncpg

from events.store import EventStore
from events.streams import stream_of
from events.types import (
    Metadata,
    NewEvent,
    RunCancelled,
    RunCreated,
    RunEvent,
    Scope,
    TestSnapshot,
    Trigger,
)
from projections.fold import RunView
from projections.resources import TERMINAL, WorkflowTestRun
from service.domain import Invalid, NotFound
from service.models import BlockScope, CreateRunRequest, SingleScope
from service.registry import fingerprints, ids
from service.registry import store as registry
from service.runs.reads import get_run, run_not_found
from service.runs.write import append_and_project, decide, enter_as_writer, writing


async def create_run(
    pool: asyncpg.Pool,
    store: EventStore,
    *,
    organisation_id: str,
    body: CreateRunRequest,
    metadata: Metadata,
    trigger: Literal["api", "manual"] = "api",
) -> WorkflowTestRun:
    """Snapshot the scope's saved tests against the current draft and record `run.created`.

    `trigger` is who started it: `api`, or `manual` from the console.
    """
    async with writing(pool, store) as writes:
        conn = writes.conn
        await enter_as_writer(conn)
        workflow, revision = await registry.lock_workflow(conn, organisation_id, body.workflow_id)
        scope = body.scope
        test_id = scope.selected if isinstance(scope, SingleScope) else None
        block_id = scope.block_id if isinstance(scope, BlockScope) else None
        if block_id is not None and not await registry.block_in_workflow(
            conn, organisation_id, workflow.id, block_id
        ):
            raise NotFound("block_not_found", f"Block not found: {block_id}")
        tests = await registry.select_tests(
            conn, organisation_id, workflow.id, test_id=test_id, block_id=block_id
        )
        if test_id is not None and not tests:
            raise NotFound("test_not_found", f"Workflow test not found: {test_id}")
        if not tests:
            raise Invalid.at(
                ["body", "scope"],
                "the scope selects no saved test: create a test first",
                "no_tests_in_scope",
            )
        run_id = ids.new_id(ids.RUN)
        snapshots = [
            TestSnapshot(
                result_id=ids.new_id(ids.RESULT),
                test_id=test.test_id,
                test_name=test.name,
                block_id=test.block_id,
                block_type=test.block_type,
                block_config=test.block_config,
                handle_inputs=test.handle_inputs,
                assertion=test.assertion,
                handle_inputs_fingerprint=test.handle_inputs_fingerprint,
                block_config_fingerprint=test.block_config_fingerprint,
                validity_fingerprint=test.validity_fingerprint,
                execution_fingerprint=fingerprints.execution(
                    test.block_config_fingerprint,
                    test.handle_inputs_fingerprint,
                    test.validity_fingerprint,
                ),
            )
            for test in tests
        ]
        created = RunCreated(
            run_id=run_id,
            organisation_id=organisation_id,
            workflow_id=workflow.id,
            workflow_version_id=workflow.draft_version_id,
            workflow_draft_fingerprint=await registry.draft_fingerprint(
                conn, organisation_id, workflow.id
            ),
            trigger=Trigger(type=trigger),
            scope=Scope(
                type="single" if test_id else "block" if block_id else "workflow",
                test_id=test_id,
                block_id=block_id,
            ),
            tests=snapshots,
            validity_fingerprint=fingerprints.combined(
                (s.test_id, s.validity_fingerprint) for s in snapshots
            ),
            input_fingerprint=fingerprints.combined(
                (s.test_id, s.handle_inputs_fingerprint) for s in snapshots
            ),
            engine_fingerprint=fingerprints.combined(
                (s.block_id, s.block_config_fingerprint) for s in snapshots
            ),
            workflow_revision=revision,
        )
        return await append_and_project(
            writes, stream_of(run_id), [NewEvent(event=created, metadata=metadata)], 0
        )


def decide_cancel(view: RunView) -> list[RunEvent]:
    """Cancelling: `run.cancelled` unless the run already ended (then nothing)."""
    if isinstance(view.run.lifecycle, TERMINAL):
        return []
    return [RunCancelled(reason="cancelled through the API")]


async def cancel_run(
    pool: asyncpg.Pool,
    store: EventStore,
    *,
    organisation_id: str,
    run_id: str,
    metadata: Metadata,
) -> WorkflowTestRun:
    """Cancel a run that is not terminal: no test starts after it; 404 otherwise.

    Tests already running finish; their outcomes are recorded on their results
    but do not reopen the run.
    """

    async with writing(pool, store) as writes:
        decided = await decide(
            writes, run_id, None, decide_cancel, metadata=metadata, organisation_id=organisation_id
        )
        if decided is None:
            raise run_not_found(run_id)
        if isinstance(decided.before.run.lifecycle, TERMINAL):
            status = decided.before.run.lifecycle.__struct_config__.tag
            raise NotFound(
                "run_not_cancellable", f"Workflow test run is already {status}: {run_id}"
            )
    return await get_run(pool, organisation_id, run_id)
