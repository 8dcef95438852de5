"""Paths under `/v1/workflows/` that this service does not serve.

The SDK has many more routes there (versions, publish, spec, edges, steps,
runs, ...). Their fixed names must not be read as a workflow id ("Workflow not
found: versions") nor answered 405 by the `{workflow_id}` route: they answer
404 `route_not_found`, naming the method and path.
"""

from __future__ import annotations

from aiohttp import web

from service.http.errors import ApiError

# The first segment after `/v1/workflows/` of the SDK's routes (0.0.155 and
# 0.0.160) that this service does not serve: never a workflow id.
RESERVED_SEGMENTS = frozenset(
    {
        "apply",
        "artifacts",
        "diff",
        "edges",
        "experiments",
        "plan",
        "publish",
        "reviews",
        "runs",
        "spec",
        "steps",
        "versions",
    }
)

PREFIX = "/v1/workflows/"


def route_not_found(request: web.Request) -> ApiError:
    """The 404 of a path this service does not serve."""
    return ApiError(
        404,
        "route_not_found",
        f"Route not found: {request.method} {request.path}",
        details={"method": request.method, "path": request.path},
    )


def unknown_route(request: web.Request, status: int) -> ApiError | None:
    """`route_not_found` for the router's 404 (no route) or 405 of a reserved name, under
    `/v1/workflows/`; None for anything else."""
    if not request.path.startswith(PREFIX):
        return None
    first = request.path[len(PREFIX) :].split("/", 1)[0]
    if status == 404 or (status == 405 and first in RESERVED_SEGMENTS):
        return route_not_found(request)
    return None
