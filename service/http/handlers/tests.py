"""`/v1/workflows/tests`: saved tests."""

from __future__ import annotations

from aiohttp import web

from service.http import pagination
from service.http.errors import json_response
from service.http.handlers.common import (
    POOL,
    decode_body,
    organisation,
    page_response,
    query_id,
    required_query,
)
from service.models import CreateTestRequest, UpdateTestRequest
from service.registry import store as registry


async def create_test(request: web.Request) -> web.Response:
    """`POST /v1/workflows/tests`: 201 WorkflowTest."""
    body = await decode_body(request, CreateTestRequest)
    async with request.app[POOL].acquire() as conn:
        test = await registry.create_test(conn, organisation(request), body)
    return json_response(test, status=201)


async def list_tests(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests?workflow_id=`: a page of the workflow's saved tests."""
    workflow_id = required_query(request, "workflow_id")
    page = pagination.parse(request.query)
    tests, metadata = await registry.list_tests(
        request.app[POOL],
        organisation(request),
        workflow_id,
        page,
        target_block_id=query_id(request, "target_block_id"),
    )
    return page_response(tests, metadata)


async def get_test(request: web.Request) -> web.Response:
    """`GET /v1/workflows/tests/{test_id}`."""
    test = await registry.get_test(
        request.app[POOL], organisation(request), _test_id(request)
    )
    return json_response(test)


async def update_test(request: web.Request) -> web.Response:
    """`PATCH /v1/workflows/tests/{test_id}`: name, assertion, source (not the target)."""
    body = await decode_body(request, UpdateTestRequest)
    async with request.app[POOL].acquire() as conn:
        test = await registry.update_test(
            conn, organisation(request), _test_id(request), body
        )
    return json_response(test)


async def delete_test(request: web.Request) -> web.Response:
    """`DELETE /v1/workflows/tests/{test_id}`: 204; past runs and results stay readable."""
    async with request.app[POOL].acquire() as conn:
        await registry.delete_test(conn, organisation(request), _test_id(request))
    return web.Response(status=204)


def _test_id(request: web.Request) -> str:
    """The saved test's id in the path: `{test_id}` (tests routes) or `{eval_id}` (evals)."""
    match = request.match_info
    return match.get("test_id") or match["eval_id"]
