"""`/v1/workflows/tests/runs`: the two seed endpoints."""

from __future__ import annotations

from aiohttp import web

from service import runs
from service.errors import json_response
from service.handlers.common import POOL, STORE, decode_body, metadata, organisation
from service.models import CreateRunRequest


async def create_run(request: web.Request) -> web.Response:
    """`POST /v1/workflows/tests/runs`: 202 WorkflowTestRun, `pending`, every test `queued`."""
    body = await decode_body(request, CreateRunRequest)
    run = await runs.create_run(
        request.app[POOL],
        request.app[STORE],
        organisation_id=organisation(request),
        body=body,
        metadata=metadata(request),
    )
    run = runs.with_freshness(
        run, engine_changed=False, inputs_changed=False, validity_changed=False
    )
    return json_response(run, status=202)


async def get_run(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/runs/{run_id}`: the run, with its freshness now."""
    run = await runs.get_run(request.app[POOL], organisation(request), request.match_info["run_id"])
    return json_response(run)


async def cancel_run(request: web.Request) -> web.Response:
    """`POST /v1/workflows/tests/runs/{run_id}/cancel`: 200 with the cancelled run."""
    run = await runs.cancel_run(
        request.app[POOL],
        request.app[STORE],
        organisation_id=organisation(request),
        run_id=request.match_info["run_id"],
        metadata=metadata(request),
    )
    return json_response(run)
