"""`/v1/workflows/tests/runs`: the two seed endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from service.http import pagination
from service.http.errors import ValidationFailedError, json_response
from service.http.handlers.common import (
    POOL,
    STORE,
    decode_body,
    metadata,
    organisation,
    page_response,
    query_id,
)
from service.models import CreateRunRequest
from service.runs import commands, reads


async def create_run(request: web.Request) -> web.Response:
    """`POST /v1/workflows/tests/runs`: 202 WorkflowTestRun, `pending`, every test `queued`."""
    body = await decode_body(request, CreateRunRequest)
    run = await commands.create_run(
        request.app[POOL],
        request.app[STORE],
        organisation_id=organisation(request),
        body=body,
        metadata=metadata(request),
    )
    run = reads.with_freshness(
        run, engine_changed=False, inputs_changed=False, validity_changed=False
    )
    return json_response(run, status=202)


async def get_run(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/runs/{run_id}`: the run, with its freshness now."""
    run_id = request.match_info["run_id"]
    run = await reads.get_run(request.app[POOL], organisation(request), run_id)
    return json_response(run)


async def cancel_run(request: web.Request) -> web.Response:
    """`POST /v1/workflows/tests/runs/{run_id}/cancel`: 200 with the cancelled run."""
    run = await commands.cancel_run(
        request.app[POOL],
        request.app[STORE],
        organisation_id=organisation(request),
        run_id=request.match_info["run_id"],
        metadata=metadata(request),
    )
    return json_response(run)


async def list_runs(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/runs`: a page of runs, filtered, newest first by default."""
    query = request.query
    sort_by = query.get("sort_by", "created_at")
    if sort_by != "created_at":
        raise ValidationFailedError.single(
            ["query", "sort_by"], "sort_by must be `created_at`", "literal_error"
        )
    for name, allowed in (
        ("status", reads.STATUSES),
        ("exclude_status", reads.STATUSES),
        ("trigger_type", reads.TRIGGERS),
    ):
        value = query.get(name)
        # Present but empty is no value of the enum either.
        if value is not None and value not in allowed:
            choices = ", ".join(sorted(allowed))
            raise ValidationFailedError.single(
                ["query", name], f"must be one of: {choices}", "literal_error"
            )
    filters = reads.RunFilters(
        workflow_id=query_id(request, "workflow_id"),
        test_id=_test_filter(request),
        target_block_id=query_id(request, "target_block_id"),
        status=query.get("status") or None,
        exclude_status=query.get("exclude_status") or None,
        trigger_type=query.get("trigger_type") or None,
        from_date=_date(query, "from_date"),
        to_date=_date(query, "to_date"),
    )
    page = pagination.parse(query)
    found, list_metadata = await reads.list_runs(
        request.app[POOL], organisation(request), filters, page
    )
    return page_response(found, list_metadata)


def _test_filter(request: web.Request) -> str | None:
    """The `test_id` filter, also named `eval_id` (SDK 0.0.160); both must agree."""
    test_id, eval_id = query_id(request, "test_id"), query_id(request, "eval_id")
    if test_id is not None and eval_id is not None and test_id != eval_id:
        raise ValidationFailedError.single(
            ["query", "eval_id"], "`test_id` and `eval_id` name different tests", "value_error"
        )
    return test_id or eval_id


def _date(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        # RFC 3339 allows a lower-case `t` and `z`; Python's parser does not.
        value = datetime.fromisoformat(raw.upper())
        # In UTC now: a date near year 1 or 9999 whose offset leaves the
        # calendar fails here, not in the driver.
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise ValidationFailedError.single(
            ["query", name], "must be an RFC 3339 date-time", "datetime_parsing"
        ) from error
