"""The route table: every route the service serves, in SPEC.md's order, with its operation.

Each entry is a method, a path, its handler and its `Operation` (summary,
request and response types, query parameters, errors); `/openapi.json` is
generated from this one table (service.http.openapi), and a served `/v1` route
without an operation is an error when the document is generated. Adding an
endpoint is one entry here and a handler. aiohttp matches in this order: fixed
paths come before `{id}` paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from projections.resources import WorkflowTestResult, WorkflowTestRun
from service.http import console, feed
from service.http.handlers import docs, events, health, metrics, results, runs, tests, workflows
from service.http.handlers import events as event_handlers
from service.http.operations import (
    ROUTE_TABLE,
    RUN_FILTERS,
    BlockPage,
    HealthStatus,
    Operation,
    Param,
    QueryId,
    RequiredQueryId,
    RunEventItemPage,
    WorkflowPage,
    WorkflowTestPage,
    WorkflowTestResultPage,
    WorkflowTestRunPage,
)
from service.models import (
    Block,
    CreateBlockRequest,
    CreateRunRequest,
    CreateTestRequest,
    CreateWorkflowRequest,
    UpdateBlockRequest,
    UpdateTestRequest,
    UpdateWorkflowRequest,
    Workflow,
    WorkflowTest,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One route: what it serves, who answers, and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Handler
    # None only outside the API (`/v1`): documented as plain text.
    operation: Operation | None


ROUTES: tuple[Route, ...] = (
    # Service
    Route(
        "GET",
        "/healthz",
        health.healthz,
        Operation("healthz", "The process is up", "service", HealthStatus, authenticated=False),
    ),
    Route(
        "GET",
        "/readyz",
        health.readyz,
        Operation(
            "readyz",
            "Ready: the database answers and every migration is applied",
            "service",
            HealthStatus,
            extra=((503, "Not ready: the database or the pending migrations", HealthStatus),),
            authenticated=False,
        ),
    ),
    Route(
        "GET",
        "/openapi.json",
        docs.openapi_json,
        Operation(
            "openapi_json",
            "This OpenAPI document",
            "service",
            dict[str, Any],
            authenticated=False,
        ),
    ),
    Route(
        "GET",
        "/docs",
        docs.docs_page,
        Operation(
            "docs_page",
            "A readable page of this document",
            "service",
            str,
            content_type="text/html",
            authenticated=False,
        ),
    ),
    # Outside the API: documented only as plain text.
    Route("GET", "/metrics", metrics.metrics, None),
    # Workflows and blocks (fixed paths before `{workflow_id}`)
    Route(
        "POST",
        "/v1/workflows",
        workflows.create_workflow,
        Operation(
            "create_workflow",
            "Create a workflow",
            "workflows",
            Workflow,
            status=201,
            body=CreateWorkflowRequest,
        ),
    ),
    Route(
        "GET",
        "/v1/workflows",
        workflows.list_workflows,
        Operation(
            "list_workflows",
            "List workflows",
            "workflows",
            WorkflowPage,
            is_list=True,
            query=(
                Param("project_id", "Only the workflows of this project.", QueryId),
                Param(
                    "sort_by",
                    "The sort key (the SDK sends `updated_at`).",
                    Literal["created_at", "updated_at"],
                    default="created_at",
                ),
            ),
        ),
    ),
    Route(
        "POST",
        "/v1/workflows/blocks",
        workflows.create_block,
        Operation(
            "create_block",
            "Add a block to a workflow's draft",
            "blocks",
            Block,
            status=201,
            body=CreateBlockRequest,
            not_found=("workflow_not_found",),
            conflict="`block_id_conflict`: the chosen block `id` is already in use",
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/blocks",
        workflows.list_blocks,
        Operation(
            "list_blocks",
            "List a workflow's blocks",
            "blocks",
            BlockPage,
            is_list=True,
            query=(Param("workflow_id", "The workflow.", RequiredQueryId, required=True),),
            not_found=("workflow_not_found",),
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/blocks/{block_id}",
        workflows.get_block,
        Operation("get_block", "Get a block", "blocks", Block, not_found=("block_not_found",)),
    ),
    Route(
        "PATCH",
        "/v1/workflows/blocks/{block_id}",
        workflows.update_block,
        Operation(
            "update_block",
            "Change a block (a new draft version of its workflow)",
            "blocks",
            Block,
            body=UpdateBlockRequest,
            not_found=("block_not_found",),
        ),
    ),
    Route(
        "DELETE",
        "/v1/workflows/blocks/{block_id}",
        workflows.delete_block,
        Operation(
            "delete_block",
            "Delete a block and its saved tests",
            "blocks",
            status=204,
            not_found=("block_not_found",),
        ),
    ),
    # Saved tests
    Route(
        "POST",
        "/v1/workflows/tests",
        tests.create_test,
        Operation(
            "create_test",
            "Save a test of one block",
            "tests",
            WorkflowTest,
            status=201,
            body=CreateTestRequest,
            description="A `run_step` source is answered 422 (`not_supported`).",
            not_found=("workflow_not_found", "block_not_found"),
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/tests",
        tests.list_tests,
        Operation(
            "list_tests",
            "List a workflow's saved tests",
            "tests",
            WorkflowTestPage,
            is_list=True,
            query=(
                Param("workflow_id", "The workflow.", RequiredQueryId, required=True),
                Param("target_block_id", "Only the tests of this block.", QueryId),
            ),
            not_found=("workflow_not_found",),
        ),
    ),
    # Test runs
    Route(
        "POST",
        "/v1/workflows/tests/runs",
        runs.create_run,
        Operation(
            "create_run",
            "Run a workflow's saved tests",
            "runs",
            WorkflowTestRun,
            status=202,
            body=CreateRunRequest,
            description=(
                "`scope` omitted, null or `{type: workflow}`: every saved test of the workflow;"
                " `{type: single, test_id}`; `{type: block, block_id}`. A scope that selects"
                " no test is answered 422 (`no_tests_in_scope`)."
            ),
            not_found=("workflow_not_found", "test_not_found", "block_not_found"),
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/tests/runs",
        runs.list_runs,
        Operation(
            "list_runs",
            "List test runs",
            "runs",
            WorkflowTestRunPage,
            is_list=True,
            query=RUN_FILTERS,
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/tests/runs/{run_id}",
        runs.get_run,
        Operation(
            "get_run",
            "Get a test run, with its freshness now",
            "runs",
            WorkflowTestRun,
            not_found=("run_not_found",),
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/tests/runs/{run_id}/events",
        events.run_events,
        Operation(
            "list_run_events",
            "A test run's events, in stream order (JSON pages, or live Server-Sent Events)",
            "runs",
            RunEventItemPage,
            description=(
                "JSON (the default): a page of events with `version > after`;"
                " `list_metadata.after` is the last version as a string, null on the last page."
                " With `Accept: text/event-stream`: every event after `Last-Event-ID` (header;"
                " else query `after`), then new ones live, each `id: <version>`,"
                " `event: <type>`, `data: <the item as JSON>`; a `: keep-alive` comment"
                f" every {event_handlers.HEARTBEAT_S:g} s while idle; the stream ends after"
                " `run.completed`, `run.cancelled` or `run.errored`."
            ),
            query=(
                Param(
                    "after",
                    "Only events after this stream version (exclusive).",
                    Annotated[int, msgspec.Meta(ge=0, le=event_handlers.MAX_VERSION)],
                    default=0,
                ),
                Param(
                    "limit",
                    f"Events per page, 1 to {event_handlers.MAX_LIMIT} (JSON only).",
                    Annotated[int, msgspec.Meta(ge=1, le=event_handlers.MAX_LIMIT)],
                    default=event_handlers.DEFAULT_LIMIT,
                ),
            ),
            not_found=("run_not_found",),
            alternatives=(("text/event-stream", str),),
        ),
    ),
    Route(
        "POST",
        "/v1/workflows/tests/runs/{run_id}/cancel",
        runs.cancel_run,
        Operation(
            "cancel_run",
            "Cancel a test run that is not terminal",
            "runs",
            WorkflowTestRun,
            not_found=("run_not_found", "run_not_cancellable"),
            conflict="`conflict`: the cancel lost every retry of a race with the run's runners",
        ),
    ),
    # Results
    Route(
        "GET",
        "/v1/workflows/tests/results",
        results.list_results,
        Operation(
            "list_results",
            "List a test run's results, in run order",
            "results",
            WorkflowTestResultPage,
            is_list=True,
            query=(Param("run_id", "The test run.", RequiredQueryId, required=True),),
            not_found=("run_not_found",),
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/tests/results/{result_id}",
        results.get_result,
        Operation(
            "get_result",
            "Get one test's result in a run",
            "results",
            WorkflowTestResult,
            not_found=("result_not_found",),
        ),
    ),
    # After the fixed paths above, so `runs` and `results` are not test ids.
    Route(
        "GET",
        "/v1/workflows/tests/{test_id}",
        tests.get_test,
        Operation(
            "get_test", "Get a saved test", "tests", WorkflowTest, not_found=("test_not_found",)
        ),
    ),
    Route(
        "PATCH",
        "/v1/workflows/tests/{test_id}",
        tests.update_test,
        Operation(
            "update_test",
            "Change a saved test's name, assertion or source",
            "tests",
            WorkflowTest,
            body=UpdateTestRequest,
            description="The target is fixed: sending `target` is answered 422 (`immutable`).",
            not_found=("test_not_found",),
        ),
    ),
    Route(
        "DELETE",
        "/v1/workflows/tests/{test_id}",
        tests.delete_test,
        Operation(
            "delete_test",
            "Delete a saved test (its past runs are kept)",
            "tests",
            status=204,
            not_found=("test_not_found",),
        ),
    ),
    Route(
        "GET",
        "/v1/workflows/{workflow_id}",
        workflows.get_workflow,
        Operation(
            "get_workflow",
            "Get a workflow",
            "workflows",
            Workflow,
            not_found=("workflow_not_found",),
        ),
    ),
    Route(
        "PATCH",
        "/v1/workflows/{workflow_id}",
        workflows.update_workflow,
        Operation(
            "update_workflow",
            "Rename or describe a workflow",
            "workflows",
            Workflow,
            body=UpdateWorkflowRequest,
            not_found=("workflow_not_found",),
        ),
    ),
    Route(
        "DELETE",
        "/v1/workflows/{workflow_id}",
        workflows.delete_workflow,
        Operation(
            "delete_workflow",
            "Delete a workflow (its runs stay readable)",
            "workflows",
            status=204,
            not_found=("workflow_not_found",),
        ),
    ),
)


TESTS_PREFIX = "/v1/workflows/tests"
EVALS_PREFIX = "/v1/workflows/evals"


def _with_evals_family(routes: tuple[Route, ...]) -> tuple[Route, ...]:
    """The table with the `/v1/workflows/evals...` twin of each saved-test route after them.

    SDK 0.0.160 calls the same API `workflows.evals`: the same handlers serve
    both names. The twins keep the saved-test routes' order (fixed paths before
    `{eval_id}`) and come before `/v1/workflows/{workflow_id}`, so no fixed
    path is taken for an id.
    """
    family = [route for route in routes if route.path.startswith(TESTS_PREFIX)]
    twins = tuple(
        replace(
            route,
            path=EVALS_PREFIX + route.path[len(TESTS_PREFIX) :].replace("{test_id}", "{eval_id}"),
            operation=route.operation
            and replace(
                route.operation,
                operation_id=f"evals_{route.operation.operation_id}",
                tag="evals",
                description=(
                    f"`{route.method} {route.path}` under SDK 0.0.160's name"
                    " (`eval_id` for `test_id`)."
                    + (f" {route.operation.description}" if route.operation.description else "")
                ),
            ),
        )
        for route in family
    )
    after = routes.index(family[-1]) + 1
    return routes[:after] + twins + routes[after:]


ROUTES = _with_evals_family(ROUTES)


def add_routes(app: web.Application) -> None:
    """Register every route of the table (and the event feed's LISTEN hub they use)."""
    feed.install(app)
    app[ROUTE_TABLE] = {
        (route.method, route.path): route.operation for route in ROUTES if route.operation
    }
    app.router.add_routes(
        [
            # web.get also answers HEAD, as every GET route always has.
            web.get(route.path, route.handler)
            if route.method == "GET"
            else web.route(route.method, route.path, route.handler)
            for route in ROUTES
        ]
    )
    # The web console's pages: for people, not operations of the API.
    console.install(app)
