"""`/v1/workflows/tests/results`: the per-test results of runs."""

from __future__ import annotations

from aiohttp import web

from service.http import pagination
from service.http.errors import json_response
from service.http.handlers.common import POOL, organisation, page_response, required_query
from service.runs import reads


async def list_results(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/results?run_id=`: a run's results in run order."""
    run_id = required_query(request, "run_id")
    page = pagination.parse(request.query)
    results, metadata = await reads.list_results(
        request.app[POOL], organisation(request), run_id, page
    )
    return page_response(results, metadata)


async def get_result(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/results/{result_id}`."""
    result = await reads.get_result(
        request.app[POOL], organisation(request), request.match_info["result_id"]
    )
    return json_response(result)
