"""`/v1/workflows/tests/results`: the per-test results of runs."""

from __future__ import annotations

import msgspec
from aiohttp import web

from projections.resources import WorkflowTestResult
from service.http import pagination
from service.http.errors import NotFoundError, json_response
from service.http.handlers.common import POOL, organisation, page_response, required_query
from service.runs import commands as runs

_decode = msgspec.json.Decoder(WorkflowTestResult).decode

_LIST = """
SELECT id, position, resource FROM test_results WHERE organisation_id = $1 AND run_id = $2
"""


async def list_results(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/results?run_id=`: a run's results in run order."""
    run_id = required_query(request, "run_id")
    page = pagination.parse(request.query)
    pool = request.app[POOL]
    org = organisation(request)
    exists = await pool.fetchval(
        "SELECT 1 FROM test_runs WHERE id = $1 AND organisation_id = $2", run_id, org
    )
    if exists is None:
        raise runs.run_not_found(run_id)
    rows, metadata = await pagination.fetch_page(
        pool, _LIST, [org, run_id], page, key="position", key_type=int
    )
    return page_response([msgspec.Raw(row["resource"]) for row in rows], metadata)


async def get_result(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/results/{result_id}`."""
    result_id = request.match_info["result_id"]
    resource = await request.app[POOL].fetchval(
        "SELECT resource FROM test_results WHERE id = $1 AND organisation_id = $2",
        result_id,
        organisation(request),
    )
    if resource is None:
        raise NotFoundError("result_not_found", f"Workflow test result not found: {result_id}")
    return json_response(msgspec.Raw(resource))
