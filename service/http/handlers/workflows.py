"""`/v1/workflows` and `/v1/workflows/blocks`."""

from __future__ import annotations

from aiohttp import web

from service.http import pagination
from service.http.errors import ValidationFailedError, json_response
from service.http.handlers import unknown
from service.http.handlers.common import (
    POOL,
    decode_body,
    organisation,
    page_response,
    query_id,
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
    """`GET /v1/workflows`: a page of workflows, by `sort_by` (`created_at` when absent;
    the SDK sends `updated_at`), only those of `project_id` when it is given."""
    sort_by = request.query.get("sort_by") or "created_at"
    if sort_by not in registry.WORKFLOW_SORT_KEYS:
        raise ValidationFailedError.single(
            ["query", "sort_by"],
            f"sort_by must be one of: {', '.join(registry.WORKFLOW_SORT_KEYS)}",
            "literal_error",
        )
    page = pagination.parse(request.query)
    workflows, metadata = await registry.list_workflows(
        request.app[POOL],
        organisation(request),
        page,
        project_id=query_id(request, "project_id"),
        sort_by=sort_by,
    )
    return page_response(workflows, metadata)


async def get_workflow(request: web.Request) -> web.Response:
    """`GET /v1/workflows/{workflow_id}`."""
    workflow = await registry.get_workflow(
        request.app[POOL], organisation(request), _workflow_id(request)
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
        request.app[POOL], organisation(request), _workflow_id(request), body
    )
    return json_response(workflow)


async def delete_workflow(request: web.Request) -> web.Response:
    """`DELETE /v1/workflows/{workflow_id}`: 204; its runs stay readable."""
    await registry.delete_workflow(
        request.app[POOL], organisation(request), _workflow_id(request)
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


def _workflow_id(request: web.Request) -> str:
    """The `{workflow_id}` of the path; a name of the SDK's own routes is no workflow id."""
    workflow_id = request.match_info["workflow_id"]
    if workflow_id in unknown.RESERVED_SEGMENTS:
        raise unknown.route_not_found(request)
    return workflow_id
