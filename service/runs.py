"""Run commands (decide -> events -> append + inline projection) and run reads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from events.store import EventStore
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
from projections.resources import TERMINAL, Freshness, WorkflowTestRun, stale_reasons
from service import fingerprints, ids, pagination, registry
from service.commands import append_and_project, decide, enter_as_writer, stream_of
from service.errors import NotFoundError, ValidationFailedError
from service.models import BlockScope, CreateRunRequest, ListMetadata, SingleScope

_decode_run = msgspec.json.Decoder(WorkflowTestRun).decode


def run_not_found(run_id: str) -> NotFoundError:
    """The 404 of an unknown run."""
    return NotFoundError("run_not_found", f"Workflow test run not found: {run_id}")


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
    async with pool.acquire() as conn, conn.transaction():
        await enter_as_writer(conn)
        workflow, revision = await registry.lock_workflow(conn, organisation_id, body.workflow_id)
        scope = body.scope
        test_id = scope.selected if isinstance(scope, SingleScope) else None
        block_id = scope.block_id if isinstance(scope, BlockScope) else None
        if block_id is not None and not await registry.block_in_workflow(
            conn, organisation_id, workflow.id, block_id
        ):
            raise NotFoundError("block_not_found", f"Block not found: {block_id}")
        tests = await registry.select_tests(
            conn, organisation_id, workflow.id, test_id=test_id, block_id=block_id
        )
        if test_id is not None and not tests:
            raise NotFoundError("test_not_found", f"Workflow test not found: {test_id}")
        if not tests:
            raise ValidationFailedError.single(
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
        run = await append_and_project(
            conn, store, stream_of(run_id), [NewEvent(event=created, metadata=metadata)], 0
        )
    store.announce(stream_of(run_id))
    return run


# Freshness compares what each test of the run tested with what the current
# draft would test, at read time, so it is right the moment a block or test
# changes. While the workflow is at the revision the run snapshotted, nothing
# changed: the one-time filter skips the comparison of every test.
_WITH_FRESHNESS = """
SELECT r.id, r.created_at, r.resource, f.engine_changed, f.inputs_changed, f.validity_changed
  FROM test_runs r
  LEFT JOIN workflows w ON w.organisation_id = r.organisation_id AND w.id = r.workflow_id
 CROSS JOIN LATERAL (
    SELECT coalesce(bool_or(b.id IS NULL
                            OR b.config_fingerprint <> x.resource->>'block_config_fingerprint'),
                    false) AS engine_changed,
           coalesce(bool_or(t.id IS NULL
                            OR t.handle_inputs_fingerprint
                               <> x.resource->>'handle_inputs_fingerprint'),
                    false) AS inputs_changed,
           coalesce(bool_or(t.id IS NULL OR t.validity_fingerprint <> x.validity_fingerprint),
                    false) AS validity_changed
      FROM test_results x
      LEFT JOIN workflow_tests t ON t.organisation_id = x.organisation_id AND t.id = x.test_id
      LEFT JOIN blocks b ON b.organisation_id = x.organisation_id AND b.id = x.block_id
     WHERE x.run_id = r.id AND w.revision IS DISTINCT FROM r.workflow_revision
 ) f
 WHERE r.organisation_id = $1
"""

_GET_RUN = _WITH_FRESHNESS + " AND r.id = $2"

STATUSES = frozenset({"pending", "queued", "running", "completed", "error", "cancelled"})
TRIGGERS = frozenset({"manual", "api", "schedule", "webhook", "email", "custom", "restart"})


async def get_run(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, run_id: str
) -> WorkflowTestRun:
    """One run of the organisation, with its freshness against the current draft; or 404."""
    row = await conn.fetchrow(_GET_RUN, organisation_id, run_id)
    if row is None:
        raise run_not_found(run_id)
    return run_of(row)


def run_of(row: asyncpg.Record) -> WorkflowTestRun:
    """A run from a `_WITH_FRESHNESS` row."""
    run = _decode_run(row["resource"])
    return with_freshness(
        run, row["engine_changed"], row["inputs_changed"], row["validity_changed"]
    )


class RunFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The filters of the runs list."""

    workflow_id: str | None = None
    test_id: str | None = None
    target_block_id: str | None = None
    status: str | None = None
    exclude_status: str | None = None
    trigger_type: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None


async def list_runs(
    conn: asyncpg.Connection | asyncpg.Pool,
    organisation_id: str,
    filters: RunFilters,
    page: pagination.PageQuery,
) -> tuple[list[WorkflowTestRun], ListMetadata]:
    """A page of the organisation's runs, newest first by default, each with its freshness."""
    sql = _WITH_FRESHNESS
    args: list[object] = [organisation_id]

    def where(condition: str, value: object) -> None:
        nonlocal sql
        args.append(value)
        sql += " AND " + condition.replace("?", f"${len(args)}")

    if filters.workflow_id:
        where("r.workflow_id = ?", filters.workflow_id)
    if filters.test_id:
        where(
            "EXISTS (SELECT 1 FROM test_results x WHERE x.organisation_id = r.organisation_id"
            " AND x.test_id = ? AND x.run_id = r.id)",
            filters.test_id,
        )
    if filters.target_block_id:
        where(
            "EXISTS (SELECT 1 FROM test_results x WHERE x.run_id = r.id AND x.block_id = ?)",
            filters.target_block_id,
        )
    if filters.status:
        where("r.status = ?", filters.status)
    if filters.exclude_status:
        where("r.status <> ?", filters.exclude_status)
    if filters.trigger_type:
        where("r.trigger_type = ?", filters.trigger_type)
    if filters.from_date:
        where("r.created_at >= ?", filters.from_date)
    if filters.to_date:
        where("r.created_at <= ?", filters.to_date)
    rows, metadata = await pagination.fetch_page(conn, sql, args, page, table="r")
    return [run_of(row) for row in rows], metadata


def with_freshness(
    run: WorkflowTestRun, engine_changed: bool, inputs_changed: bool, validity_changed: bool
) -> WorkflowTestRun:
    """The run with its freshness status and reasons filled in."""
    baseline = run.freshness or Freshness(status="unknown", baseline_run_id=run.id)
    reasons = stale_reasons(engine_changed, inputs_changed, validity_changed)
    freshness = msgspec.structs.replace(
        baseline, status="stale" if reasons else "fresh", reasons=reasons
    )
    return msgspec.structs.replace(run, freshness=freshness)


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

    def decision(view: RunView) -> list[RunEvent]:
        if isinstance(view.run.lifecycle, TERMINAL):
            return []
        return [RunCancelled(reason="cancelled through the API")]

    async with pool.acquire() as conn, conn.transaction():
        decided = await decide(
            conn, store, run_id, None, decision, metadata=metadata, organisation_id=organisation_id
        )
        if decided is None:
            raise run_not_found(run_id)
        if isinstance(decided.before.run.lifecycle, TERMINAL):
            status = decided.before.run.lifecycle.__struct_config__.tag
            raise NotFoundError(
                "run_not_cancellable", f"Workflow test run is already {status}: {run_id}"
            )
    store.announce(stream_of(run_id))
    return await get_run(pool, organisation_id, run_id)
