"""The run's reads: a run with its freshness, the runs list, a run's results.

Every query reads the read models (`test_runs`, `test_results`), scoped by the
organisation: another organisation's run is simply not found.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from projections.resources import Freshness, WorkflowTestRun, stale_reasons
from service import paging
from service.domain import NotFound
from service.models import ListMetadata

_decode_run = msgspec.json.Decoder(WorkflowTestRun).decode


def run_not_found(run_id: str) -> NotFound:
    """The 404 of an unknown run."""
    return NotFound("run_not_found", f"Workflow test run not found: {run_id}")


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
    page: paging.PageQuery,
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
    rows, metadata = await paging.fetch_page(conn, sql, args, page, table="r")
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


_RUN_EXISTS = "SELECT EXISTS (SELECT 1 FROM test_runs WHERE organisation_id = $1 AND id = $2)"

_RESULTS = """
SELECT id, position, resource FROM test_results WHERE organisation_id = $1 AND run_id = $2
"""

_RESULT = "SELECT resource FROM test_results WHERE id = $1 AND organisation_id = $2"


async def run_exists(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, run_id: str
) -> bool:
    """Whether the organisation has this run."""
    return bool(await conn.fetchval(_RUN_EXISTS, organisation_id, run_id))


async def list_results(
    conn: asyncpg.Connection | asyncpg.Pool,
    organisation_id: str,
    run_id: str,
    page: paging.PageQuery,
) -> tuple[list[msgspec.Raw], ListMetadata]:
    """A page of a run's results in run order, as their stored JSON; NotFound for no such run."""
    if not await run_exists(conn, organisation_id, run_id):
        raise run_not_found(run_id)
    rows, metadata = await paging.fetch_page(
        conn, _RESULTS, [organisation_id, run_id], page, key="position", key_type=int
    )
    return [msgspec.Raw(row["resource"]) for row in rows], metadata


async def get_result(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, result_id: str
) -> msgspec.Raw:
    """One result of the organisation, as its stored JSON; NotFound otherwise."""
    resource = await conn.fetchval(_RESULT, result_id, organisation_id)
    if resource is None:
        raise NotFound("result_not_found", f"Workflow test result not found: {result_id}")
    return msgspec.Raw(resource)
