"""`/v1/workflows` and `/v1/workflows/blocks`."""

from __future__ import annotations

from aiohttp import web

from service import pagination, registry
from service.errors import json_response
from service.handlers.common import POOL, decode_body, organisation, page_response
from service.models import CreateBlockRequest, CreateWorkflowRequest


async def create_workflow(request: web.Request) -> web.Response:
    """`POST /v1/workflows`: 201 Workflow."""
    body = await decode_body(request, CreateWorkflowRequest)
    workflow = await registry.create_workflow(request.app[POOL], organisation(request), body)
    return json_response(workflow, status=201)


async def list_workflows(request: web.Request) -> web.Response:
    """`GET /v1/workflows`: a page of workflows."""
    page = pagination.parse(request.query)
    rows, metadata = await pagination.fetch_page(
        request.app[POOL], registry.WORKFLOW_LIST, [organisation(request)], page
    )
    return page_response([registry.workflow_from_row(row) for row in rows], metadata)


async def get_workflow(request: web.Request) -> web.Response:
    """`GET /v1/workflows/{workflow_id}`."""
    workflow = await registry.get_workflow(
        request.app[POOL], organisation(request), request.match_info["workflow_id"]
    )
    return json_response(workflow)


async def create_block(request: web.Request) -> web.Response:
    """`POST /v1/workflows/blocks`: 201 Block; the workflow gets a new draft version."""
    body = await decode_body(request, CreateBlockRequest)
    async with request.app[POOL].acquire() as conn:
        block = await registry.create_block(conn, organisation(request), body)
    return json_response(block, status=201)
