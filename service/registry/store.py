"""Workflows, blocks and saved tests: every SQL call of the registry.

Every query is scoped by the organisation: another organisation's id is
simply not found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from events.types import utcnow
from projections.resources import Freshness, stale_reasons
from projections.summaries import RunSummary
from service import paging
from service.domain import Conflict, Invalid, NotFound
from service.models import (
    AssertionSpec,
    Block,
    CreateBlockRequest,
    CreateTestRequest,
    CreateWorkflowRequest,
    ListMetadata,
    ManualSource,
    Source,
    UpdateBlockRequest,
    UpdateTestRequest,
    UpdateWorkflowRequest,
    Workflow,
    WorkflowTest,
    WorkflowTestBlockTarget,
)
from service.registry import fingerprints, ids, validation

_decode_source = msgspec.json.Decoder(Source).decode
_decode_assertion = msgspec.json.Decoder(AssertionSpec).decode
_decode_summary = msgspec.json.Decoder(RunSummary).decode
_encode = msgspec.json.Encoder().encode
_to_builtins = msgspec.to_builtins

_WORKFLOW_COLUMNS = "id, name, description, project_id, draft_version_id, created_at, updated_at"


def workflow_not_found(workflow_id: str) -> NotFound:
    """The 404 of an unknown workflow."""
    return NotFound("workflow_not_found", f"Workflow not found: {workflow_id}")


def _workflow(row: asyncpg.Record) -> Workflow:
    return Workflow(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        project_id=row["project_id"],
        draft_version_id=row["draft_version_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create_workflow(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, body: CreateWorkflowRequest
) -> Workflow:
    """Create a workflow with an empty draft."""
    now = utcnow()
    row = await conn.fetchrow(
        f"""
        INSERT INTO workflows (id, organisation_id, name, description, project_id,
                               draft_version_id, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
        RETURNING {_WORKFLOW_COLUMNS}
        """,
        ids.new_id(ids.WORKFLOW),
        organisation_id,
        body.name,
        body.description,
        body.project_id,
        ids.new_id(ids.DRAFT),
        now,
    )
    return _workflow(row)


async def get_workflow(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, workflow_id: str
) -> Workflow:
    """One workflow of the organisation, or 404."""
    row = await conn.fetchrow(
        f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE organisation_id = $1 AND id = $2",
        organisation_id,
        workflow_id,
    )
    if row is None:
        raise workflow_not_found(workflow_id)
    return _workflow(row)


async def lock_workflow(
    conn: asyncpg.Connection, organisation_id: str, workflow_id: str
) -> tuple[Workflow, int]:
    """The workflow and its revision, held (FOR SHARE) so no block or test changes
    until the transaction ends: a run snapshots one consistent draft."""
    row = await conn.fetchrow(
        f"SELECT {_WORKFLOW_COLUMNS}, revision FROM workflows"
        " WHERE organisation_id = $1 AND id = $2 FOR SHARE",
        organisation_id,
        workflow_id,
    )
    if row is None:
        raise workflow_not_found(workflow_id)
    return _workflow(row), row["revision"]


WORKFLOW_LIST = f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE organisation_id = $1"
# The keys `GET /v1/workflows` sorts by (`sort_by`; the SDK sends `updated_at` by default).
WORKFLOW_SORT_KEYS = ("created_at", "updated_at")


async def update_workflow(
    conn: asyncpg.Connection | asyncpg.Pool,
    organisation_id: str,
    workflow_id: str,
    body: UpdateWorkflowRequest,
) -> Workflow:
    """Change a workflow's name or description (its draft is untouched)."""
    row = await conn.fetchrow(
        f"""
        UPDATE workflows
           SET name = CASE WHEN $3 THEN $4 ELSE name END,
               description = CASE WHEN $5 THEN $6 ELSE description END,
               updated_at = $7
         WHERE organisation_id = $1 AND id = $2
        RETURNING {_WORKFLOW_COLUMNS}
        """,
        organisation_id,
        workflow_id,
        body.name is not msgspec.UNSET,
        body.name or None,
        body.description is not msgspec.UNSET,
        body.description or "",
        utcnow(),
    )
    if row is None:
        raise workflow_not_found(workflow_id)
    return _workflow(row)


async def delete_workflow(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, workflow_id: str
) -> None:
    """Delete a workflow with its blocks and saved tests; its runs stay readable."""
    deleted = await conn.fetchval(
        "DELETE FROM workflows WHERE organisation_id = $1 AND id = $2 RETURNING id",
        organisation_id,
        workflow_id,
    )
    if deleted is None:
        raise workflow_not_found(workflow_id)


# Blocks ---------------------------------------------------------------------

_BLOCK_COLUMNS = (
    "id, workflow_id, type, label, parent_id, position_x, position_y, width, height, config,"
    " created_at, updated_at"
)


def _block(row: asyncpg.Record) -> Block:
    return Block(
        id=row["id"],
        workflow_id=row["workflow_id"],
        type=row["type"],
        label=row["label"],
        parent_id=row["parent_id"],
        position_x=row["position_x"],
        position_y=row["position_y"],
        width=row["width"],
        height=row["height"],
        config=msgspec.json.decode(row["config"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create_block(
    conn: asyncpg.Connection, organisation_id: str, body: CreateBlockRequest
) -> Block:
    """Add a block to a workflow's draft: a new draft version id."""
    config = body.config or {}
    now = utcnow()
    async with conn.transaction():
        await _touch_draft(conn, organisation_id, body.workflow_id, now)
        try:
            row = await conn.fetchrow(
                f"""
                INSERT INTO blocks (organisation_id, id, workflow_id, type, label, position_x,
                                    position_y, width, height, config, config_fingerprint,
                                    created_at, updated_at, parent_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13)
                RETURNING {_BLOCK_COLUMNS}
                """,
                organisation_id,
                body.id or ids.new_id(ids.BLOCK),
                body.workflow_id,
                body.type,
                body.label,
                body.position_x,
                body.position_y,
                body.width,
                body.height,
                _encode(config),
                fingerprints.block_config(body.type, config),
                now,
                body.parent_id,
            )
        except asyncpg.UniqueViolationError as error:
            raise Conflict(
                "block_id_conflict", f"Block id already in use: {body.id}"
            ) from error
    return _block(row)


def block_not_found(block_id: str) -> NotFound:
    """The 404 of an unknown block."""
    return NotFound("block_not_found", f"Block not found: {block_id}")


BLOCK_LIST = f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE organisation_id = $1 AND workflow_id = $2"


async def get_block(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, block_id: str
) -> Block:
    """One block of the organisation, or 404."""
    row = await conn.fetchrow(
        f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE organisation_id = $1 AND id = $2",
        organisation_id,
        block_id,
    )
    if row is None:
        raise block_not_found(block_id)
    return _block(row)


async def update_block(
    conn: asyncpg.Connection, organisation_id: str, block_id: str, body: UpdateBlockRequest
) -> Block:
    """Change a block: a new draft version id, and a new fingerprint when its config changes."""
    async with conn.transaction():
        current = await conn.fetchrow(
            "SELECT workflow_id, type, config FROM blocks"
            " WHERE organisation_id = $1 AND id = $2 FOR UPDATE",
            organisation_id,
            block_id,
        )
        if current is None:
            raise block_not_found(block_id)
        config: dict[str, Any] = msgspec.json.decode(current["config"])
        if body.config is not msgspec.UNSET:
            config = body.config if body.config_mode == "replace" else {**config, **body.config}
        now = utcnow()
        await _touch_draft(conn, organisation_id, current["workflow_id"], now)
        fields = {
            name: value
            for name in ("label", "position_x", "position_y", "width", "height")
            if (value := getattr(body, name)) is not msgspec.UNSET
        }
        assignments = "".join(f", {name} = ${index}" for index, name in enumerate(fields, 6))
        row = await conn.fetchrow(
            f"""
            UPDATE blocks SET config = $3, config_fingerprint = $4, updated_at = $5{assignments}
             WHERE organisation_id = $1 AND id = $2
            RETURNING {_BLOCK_COLUMNS}
            """,
            organisation_id,
            block_id,
            _encode(config),
            fingerprints.block_config(current["type"], config),
            now,
            *fields.values(),
        )
    return _block(row)


async def delete_block(conn: asyncpg.Connection, organisation_id: str, block_id: str) -> None:
    """Delete a block and its saved tests (a new draft version); past runs stay readable."""
    async with conn.transaction():
        workflow_id = await conn.fetchval(
            "DELETE FROM blocks WHERE organisation_id = $1 AND id = $2 RETURNING workflow_id",
            organisation_id,
            block_id,
        )
        if workflow_id is None:
            raise block_not_found(block_id)
        await conn.execute(
            "DELETE FROM workflow_tests WHERE organisation_id = $1 AND block_id = $2",
            organisation_id,
            block_id,
        )
        await _touch_draft(conn, organisation_id, workflow_id, utcnow())


async def _touch_draft(
    conn: asyncpg.Connection, organisation_id: str, workflow_id: str, now: datetime
) -> None:
    """A change to a workflow's blocks makes a new draft version id."""
    updated = await conn.fetchval(
        """
        UPDATE workflows SET draft_version_id = $3, updated_at = $4, revision = revision + 1
         WHERE organisation_id = $1 AND id = $2
        RETURNING id
        """,
        organisation_id,
        workflow_id,
        ids.new_id(ids.DRAFT),
        now,
    )
    if updated is None:
        raise workflow_not_found(workflow_id)


# Saved tests ----------------------------------------------------------------


_TEST_VIEW = """
SELECT t.id, t.workflow_id, t.block_id, t.name, t.source, t.assertion, t.created_at,
       t.updated_at, t.handle_inputs_fingerprint, t.validity_fingerprint,
       b.config_fingerprint, b.type AS block_type, b.config AS block_config,
       s.latest, s.latest_passing, s.latest_failing
  FROM workflow_tests t
  LEFT JOIN blocks b ON b.organisation_id = t.organisation_id AND b.id = t.block_id
  LEFT JOIN test_run_summaries s ON s.test_id = t.id
 WHERE t.organisation_id = $1
"""


def _test(row: asyncpg.Record) -> WorkflowTest:
    latest = _summary(row["latest"])
    # Validated against the block as it is now: a change to the block re-validates.
    issues = validation.validate(
        row["block_type"],
        msgspec.json.decode(row["block_config"]) if row["block_config"] else None,
        msgspec.json.decode(row["assertion"]),
    )
    return WorkflowTest(
        id=row["id"],
        workflow_id=row["workflow_id"],
        target=WorkflowTestBlockTarget(block_id=row["block_id"]),
        source=_decode_source(row["source"]),
        name=row["name"],
        assertion=_decode_assertion(row["assertion"]),
        validation_status=validation.status_of(issues),
        validation_issues=issues,
        freshness=_test_freshness(row, latest),
        latest_run_summary=latest,
        latest_passing_run_summary=_summary(row["latest_passing"]),
        latest_failing_run_summary=_summary(row["latest_failing"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _summary(raw: bytes | None) -> RunSummary | None:
    return _decode_summary(raw) if raw else None


def _test_freshness(row: asyncpg.Record, latest: RunSummary | None) -> Freshness:
    """Would the test, as it is now, test what its latest run tested?"""
    if latest is None:
        return Freshness(
            status="unknown",
            reasons=["no_baseline"],
            validity_fingerprint=row["validity_fingerprint"],
            input_fingerprint=row["handle_inputs_fingerprint"],
        )
    reasons = stale_reasons(
        row["config_fingerprint"] != latest.block_config_fingerprint,
        row["handle_inputs_fingerprint"] != latest.handle_inputs_fingerprint,
        row["validity_fingerprint"] != latest.validity_fingerprint,
    )
    return Freshness(
        status="stale" if reasons else "fresh",
        reasons=reasons,
        validity_fingerprint=row["validity_fingerprint"],
        input_fingerprint=row["handle_inputs_fingerprint"],
        baseline_run_id=latest.run_id,
    )


def test_not_found(test_id: str) -> NotFound:
    """The 404 of an unknown saved test."""
    return NotFound("test_not_found", f"Workflow test not found: {test_id}")


async def get_test(
    conn: asyncpg.Connection | asyncpg.Pool, organisation_id: str, test_id: str
) -> WorkflowTest:
    """One saved test of the organisation, or 404."""
    row = await conn.fetchrow(_TEST_VIEW + " AND t.id = $2", organisation_id, test_id)
    if row is None:
        raise test_not_found(test_id)
    return _test(row)


async def update_test(
    conn: asyncpg.Connection, organisation_id: str, test_id: str, body: UpdateTestRequest
) -> WorkflowTest:
    """Change a test's name, assertion or source (its target is fixed)."""
    if body.target is not msgspec.UNSET:
        raise Invalid.at(
            ["body", "target"], "the target of a saved test cannot change", "immutable"
        )
    async with conn.transaction():
        locked = await conn.fetchval(
            "SELECT id FROM workflow_tests WHERE organisation_id = $1 AND id = $2 FOR UPDATE",
            organisation_id,
            test_id,
        )
        if locked is None:
            raise test_not_found(test_id)
        test = await get_test(conn, organisation_id, test_id)
        source = test.source
        if not isinstance(body.source, msgspec.UnsetType):
            source = _check_source(body.source)
        assertion = test.assertion
        if not isinstance(body.assertion, msgspec.UnsetType):
            # A new assertion keeps the test's assertion id unless it names its own.
            assertion = body.assertion
            if assertion.id is None:
                assertion = msgspec.structs.replace(assertion, id=test.assertion.id)
        name = test.name if body.name is msgspec.UNSET else body.name
        assert isinstance(source, ManualSource)  # noqa: S101  (only manual sources are stored)
        await conn.execute(
            """
            UPDATE workflow_tests
               SET name = $3, source = $4, assertion = $5, handle_inputs_fingerprint = $6,
                   validity_fingerprint = $7, updated_at = $8
             WHERE organisation_id = $1 AND id = $2
            """,
            organisation_id,
            test_id,
            name,
            _encode(source),
            _encode(assertion),
            fingerprints.handle_inputs(_to_builtins(source.handle_inputs)),
            fingerprints.validity(_to_builtins(assertion)),
            utcnow(),
        )
        await _bump_revision(conn, organisation_id, test.workflow_id)
        return await get_test(conn, organisation_id, test_id)


async def delete_test(conn: asyncpg.Connection, organisation_id: str, test_id: str) -> None:
    """Delete a saved test; its past runs and their results stay readable."""
    async with conn.transaction():
        workflow_id = await conn.fetchval(
            "DELETE FROM workflow_tests WHERE organisation_id = $1 AND id = $2"
            " RETURNING workflow_id",
            organisation_id,
            test_id,
        )
        if workflow_id is None:
            raise test_not_found(test_id)
        await _bump_revision(conn, organisation_id, workflow_id)


async def _bump_revision(conn: asyncpg.Connection, organisation_id: str, workflow_id: str) -> None:
    """A saved test changed: runs of the workflow compare their fingerprints again."""
    await conn.execute(
        "UPDATE workflows SET revision = revision + 1 WHERE organisation_id = $1 AND id = $2",
        organisation_id,
        workflow_id,
    )


TEST_LIST = _TEST_VIEW + " AND t.workflow_id = $2"


def _check_source(source: Source) -> ManualSource:
    if not isinstance(source, ManualSource):
        raise Invalid.at(
            ["body", "source", "type"],
            "source type `run_step` is not supported: workflow runs do not exist in this service",
            "not_supported",
        )
    return source


async def create_test(
    conn: asyncpg.Connection, organisation_id: str, body: CreateTestRequest
) -> WorkflowTest:
    """Save a test of one block of the workflow."""
    source = _check_source(body.source)
    await get_workflow(conn, organisation_id, body.workflow_id)
    block_workflow = await conn.fetchval(
        "SELECT workflow_id FROM blocks WHERE organisation_id = $1 AND id = $2",
        organisation_id,
        body.target.block_id,
    )
    if block_workflow != body.workflow_id:
        raise block_not_found(body.target.block_id)
    assertion = body.assertion
    if assertion.id is None:
        assertion = msgspec.structs.replace(assertion, id=ids.new_id(ids.ASSERTION))
    assertion_json = _to_builtins(assertion)
    inputs_json = _to_builtins(source.handle_inputs)
    now = utcnow()
    row = await conn.fetchrow(
        """
        INSERT INTO workflow_tests (id, organisation_id, workflow_id, block_id, name, source,
                                    assertion, handle_inputs_fingerprint, validity_fingerprint,
                                    created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
        RETURNING id
        """,
        ids.new_id(ids.TEST),
        organisation_id,
        body.workflow_id,
        body.target.block_id,
        body.name,
        _encode(source),
        _encode(assertion),
        fingerprints.handle_inputs(inputs_json),
        fingerprints.validity(assertion_json),
        now,
    )
    return await get_test(conn, organisation_id, row["id"])


class SelectedTest(msgspec.Struct, frozen=True, kw_only=True):
    """A saved test joined with its block, as a run snapshots it."""

    test_id: str
    name: str | None
    block_id: str
    block_type: str
    block_config: dict[str, Any]
    block_config_fingerprint: str
    handle_inputs: dict[str, Any]
    handle_inputs_fingerprint: str
    assertion: dict[str, Any]
    validity_fingerprint: str


_SELECT_TESTS = """
SELECT t.id, t.name, t.block_id, t.source, t.assertion, t.handle_inputs_fingerprint,
       t.validity_fingerprint, b.type, b.config, b.config_fingerprint
  FROM workflow_tests t
  JOIN blocks b ON b.organisation_id = t.organisation_id AND b.id = t.block_id
 WHERE t.organisation_id = $1 AND t.workflow_id = $2
"""


async def select_tests(
    conn: asyncpg.Connection,
    organisation_id: str,
    workflow_id: str,
    *,
    test_id: str | None = None,
    block_id: str | None = None,
) -> list[SelectedTest]:
    """The saved tests of a workflow, optionally only one test or one block's, in creation order."""
    sql, args = _SELECT_TESTS, [organisation_id, workflow_id]
    if test_id is not None:
        sql += " AND t.id = $3"
        args.append(test_id)
    elif block_id is not None:
        sql += " AND t.block_id = $3"
        args.append(block_id)
    rows = await conn.fetch(sql + " ORDER BY t.created_at, t.id", *args)
    return [
        SelectedTest(
            test_id=row["id"],
            name=row["name"],
            block_id=row["block_id"],
            block_type=row["type"],
            block_config=msgspec.json.decode(row["config"]),
            block_config_fingerprint=row["config_fingerprint"],
            handle_inputs=msgspec.json.decode(row["source"]).get("handle_inputs", {}),
            handle_inputs_fingerprint=row["handle_inputs_fingerprint"],
            assertion=msgspec.json.decode(row["assertion"]),
            validity_fingerprint=row["validity_fingerprint"],
        )
        for row in rows
    ]


async def block_in_workflow(
    conn: asyncpg.Connection, organisation_id: str, workflow_id: str, block_id: str
) -> bool:
    """Whether the block exists in this workflow of this organisation."""
    found = await conn.fetchval(
        "SELECT 1 FROM blocks WHERE organisation_id = $1 AND id = $2 AND workflow_id = $3",
        organisation_id,
        block_id,
        workflow_id,
    )
    return found is not None


async def draft_fingerprint(
    conn: asyncpg.Connection, organisation_id: str, workflow_id: str
) -> str:
    """The fingerprint of the workflow's whole draft: every block's config."""
    rows = await conn.fetch(
        "SELECT id, config_fingerprint FROM blocks WHERE organisation_id = $1 AND workflow_id = $2",
        organisation_id,
        workflow_id,
    )
    return fingerprints.combined((row["id"], row["config_fingerprint"]) for row in rows)


async def list_workflows(
    conn: asyncpg.Connection | asyncpg.Pool,
    organisation_id: str,
    page: paging.PageQuery,
    *,
    project_id: str | None = None,
    sort_by: str = "created_at",
) -> tuple[list[Workflow], ListMetadata]:
    """A page of the organisation's workflows, by `sort_by` (one of `WORKFLOW_SORT_KEYS`),
    only those of `project_id` when it is given."""
    select, params = WORKFLOW_LIST, [organisation_id]
    if project_id is not None:
        select += " AND project_id = $2"
        params.append(project_id)
    rows, metadata = await paging.fetch_page(conn, select, params, page, key=sort_by)
    return [_workflow(row) for row in rows], metadata


async def list_blocks(
    conn: asyncpg.Connection | asyncpg.Pool,
    organisation_id: str,
    workflow_id: str,
    page: paging.PageQuery,
) -> tuple[list[Block], ListMetadata]:
    """A page of a workflow's blocks; the workflow must exist (NotFound otherwise)."""
    await get_workflow(conn, organisation_id, workflow_id)
    rows, metadata = await paging.fetch_page(
        conn, BLOCK_LIST, [organisation_id, workflow_id], page
    )
    return [_block(row) for row in rows], metadata


async def list_tests(
    conn: asyncpg.Connection | asyncpg.Pool,
    organisation_id: str,
    workflow_id: str,
    page: paging.PageQuery,
    *,
    target_block_id: str | None = None,
) -> tuple[list[WorkflowTest], ListMetadata]:
    """A page of a workflow's saved tests, optionally of one target block."""
    await get_workflow(conn, organisation_id, workflow_id)
    sql, params = TEST_LIST, [organisation_id, workflow_id]
    if target_block_id:
        sql += " AND t.block_id = $3"
        params.append(target_block_id)
    rows, metadata = await paging.fetch_page(conn, sql, params, page, table="t")
    return [_test(row) for row in rows], metadata
