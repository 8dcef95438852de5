"""`/v1/workflows` and `/v1/workflows/blocks`."""

from __future__ import annotations

from aiohttp import web

from service.http import pagination
from service.http.errors import json_response
from service.http.handlers.common import (
    POOL,
    decode_body,
    organisation,
    page_response,
    required_query,
)
from service.models import (
    CreateBlockRequest,
    CreateWorkflowRequest,
    UpdateBlockRequest,
    UpdateWorkflowRequest,
)
from service.registry import store as registry


async def create_workflow(request: web.Request) -> web.Response:
    """`POST /v1/workflows`: 201 Workflow."""
    body = await decode_body(request, CreateWorkflowRequest)
    workflow = await registry.create_workflow(request.app[POOL], organisation(request), body)
    return json_response(workflow, status=201)


async def list_workflows(request: web.Request) -> web.Response:
    """`GET /v1/workflows`: a page of workflows."""
    page = pagination.parse(request.query)
    workflows, metadata = await registry.list_workflows(
        request.app[POOL], organisation(request), page
    )
    return page_response(workflows, metadata)


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


async def update_workflow(request: web.Request) -> web.Response:
    """`PATCH /v1/workflows/{workflow_id}`: name and description."""
    body = await decode_body(request, UpdateWorkflowRequest)
    workflow = await registry.update_workflow(
        request.app[POOL], organisation(request), request.match_info["workflow_id"], body
    )
    return json_response(workflow)


async def delete_workflow(request: web.Request) -> web.Response:
    """`DELETE /v1/workflows/{workflow_id}`: 204; its runs stay readable."""
    await registry.delete_workflow(
        request.app[POOL], organisation(request), request.match_info["workflow_id"]
    )
    return web.Response(status=204)


async def list_blocks(request: web.Request) -> web.Response:
    """`GET /v1/workflows/blocks?workflow_id=`: a page of the workflow's blocks."""
    workflow_id = required_query(request, "workflow_id")
    page = pagination.parse(request.query)
    blocks, metadata = await registry.list_blocks(
        request.app[POOL], organisation(request), workflow_id, page
    )
    return page_response(blocks, metadata)


async def get_block(request: web.Request) -> web.Response:
    """`GET /v1/workflows/blocks/{block_id}`."""
    block = await registry.get_block(
        request.app[POOL], organisation(request), request.match_info["block_id"]
    )
    return json_response(block)


async def update_block(request: web.Request) -> web.Response:
    """`PATCH /v1/workflows/blocks/{block_id}`: a new draft version of its workflow."""
    body = await decode_body(request, UpdateBlockRequest)
    async with request.app[POOL].acquire() as conn:
        block = await registry.update_block(
            conn, organisation(request), request.match_info["block_id"], body
        )
    return json_response(block)


async def delete_block(request: web.Request) -> web.Response:
    """`DELETE /v1/workflows/blocks/{block_id}`: 204, with its saved tests."""
    async with request.app[POOL].acquire() as conn:
        await registry.delete_block(conn, organisation(request), request.match_info["block_id"])
    return web.Response(status=204)
