"""The API's OpenAPI 3.1 document, generated from the types the handlers use.

Every request and response schema comes from msgspec (`schema_components`) on
the very structs that `decode_body` decodes and the handlers encode, so the
document cannot drift from the code. What msgspec cannot know (status codes,
query parameters, which errors an operation answers) lives in one declarative
table, `OPERATIONS`, keyed by (method, route path). The document lists exactly
the routes the app serves: a `/v1` route missing from the table is an error at
generation time, so a new endpoint cannot be forgotten.
"""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import metadata
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import hdrs, web

from projections.resources import WorkflowTestResult, WorkflowTestRun
from service import idempotency, pagination, ratelimit, runs
from service.feed import RunEventItem
from service.handlers import events as event_handlers
from service.handlers.common import MAX_QUERY_ID
from service.models import (
    NO_NUL,
    Block,
    CreateBlockRequest,
    CreateRunRequest,
    CreateTestRequest,
    CreateWorkflowRequest,
    ListMetadata,
    UpdateBlockRequest,
    UpdateTestRequest,
    UpdateWorkflowRequest,
    Workflow,
    WorkflowTest,
)

REF_TEMPLATE = "#/components/schemas/{name}"

# Error and health bodies: service/errors.py and handlers/health.py build these
# as plain dicts, so their shapes are declared here as structs (and checked
# against real answers by tests/integration/test_openapi.py).


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What went wrong: a stable `code`, a human `message`, sometimes `details`."""

    code: str
    message: str
    details: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    """Every error except validation: `{"detail": {"code", "message", "details"?}}`."""

    detail: ErrorDetail


class ValidationProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One invalid input: where (`["body", "scope", "test_id"]`), what and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A 422 in FastAPI's shape: `{"detail": [{"loc", "msg", "type"}]}`."""

    detail: list[ValidationProblem]


class HealthStatus(msgspec.Struct, frozen=True, kw_only=True):
    """`ok`, or `unavailable` with the database error or the pending migrations."""

    status: Literal["ok", "unavailable"]
    database: str | msgspec.UnsetType = msgspec.UNSET
    pending_migrations: list[str] | msgspec.UnsetType = msgspec.UNSET


def _page(item: type, plural: str) -> type:
    """The list envelope of `item`: `{data: [item], list_metadata}`, named `<Item>Page`."""
    return msgspec.defstruct(
        f"{item.__name__}Page",
        [("data", list.__class_getitem__(item)), ("list_metadata", ListMetadata)],
        kw_only=True,
        frozen=True,
        module=__name__,
        namespace={"__doc__": f"A page of {plural}; `list_metadata.after` is null on the last."},
    )


WorkflowPage = _page(Workflow, "workflows")
BlockPage = _page(Block, "blocks")
WorkflowTestPage = _page(WorkflowTest, "saved tests")
WorkflowTestRunPage = _page(WorkflowTestRun, "test runs")
WorkflowTestResultPage = _page(WorkflowTestResult, "test results")
RunEventItemPage = _page(RunEventItem, "a run's events, in version order")


# The table ------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A query parameter: its schema comes from a Python type, like the bodies'."""

    name: str
    description: str
    type: Any = str
    required: bool = False
    default: Any = None
    # The allowed values, when the handler checks against a set rather than a type.
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """What the table knows of one (method, path): what msgspec cannot infer."""

    operation_id: str
    summary: str
    tag: str
    # The success body's type (`None`: no body), its status and media type.
    response: Any = None
    status: int = 200
    content_type: str = "application/json"
    description: str = ""
    # The request body's type, decoded by `decode_body` (`None`: no body).
    body: Any = None
    # A list: `response` is its page type; pagination parameters and 400 follow.
    is_list: bool = False
    query: tuple[Param, ...] = ()
    # The `detail.code`s of its 404s (none: it never answers 404).
    not_found: tuple[str, ...] = ()
    # When it answers 409, and why.
    conflict: str = ""
    # Further answers: (status, description, body type).
    extra: tuple[tuple[int, str, Any], ...] = ()
    authenticated: bool = True
    # Further media types of the success answer (content negotiation): (media type, type).
    alternatives: tuple[tuple[str, Any], ...] = ()


_DEFAULT_PAGE = pagination.PageQuery()

# What the handlers accept as an id in the query (`handlers.common.query_id`).
QueryId = Annotated[str, msgspec.Meta(max_length=MAX_QUERY_ID, pattern=NO_NUL)]
RequiredQueryId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_QUERY_ID, pattern=NO_NUL)
]
# Cursors are unpadded URL-safe base64 (`pagination.encode_cursor`).
Cursor = Annotated[str, msgspec.Meta(pattern=pagination.CURSOR_PATTERN)]

PAGINATION = (
    Param("before", "Cursor: the page before this one (not with `after`).", Cursor),
    Param("after", "Cursor: the page after this one (not with `before`).", Cursor),
    Param(
        "limit",
        f"Items per page, 1 to {pagination.MAX_LIMIT}.",
        Annotated[int, msgspec.Meta(ge=1, le=pagination.MAX_LIMIT)],
        default=_DEFAULT_PAGE.limit,
    ),
    Param("order", "Order of creation.", Literal["asc", "desc"], default=_DEFAULT_PAGE.order),
)

_RUN_FILTERS = (
    Param("workflow_id", "Only runs of this workflow.", QueryId),
    Param("test_id", "Only runs that include this saved test.", QueryId),
    Param("eval_id", "`test_id` under SDK 0.0.160's name (both: they must agree).", QueryId),
    Param("target_block_id", "Only runs that include a test of this block.", QueryId),
    Param("status", "Only runs in this lifecycle status.", enum=tuple(sorted(runs.STATUSES))),
    Param(
        "exclude_status", "Every run but those in this status.", enum=tuple(sorted(runs.STATUSES))
    ),
    Param("trigger_type", "Only runs started this way.", enum=tuple(sorted(runs.TRIGGERS))),
    Param("from_date", "Created at or after (RFC 3339; no offset means UTC).", datetime),
    Param("to_date", "Created at or before (RFC 3339; no offset means UTC).", datetime),
    Param(
        "sort_by", "The sort key (only `created_at`).", Literal["created_at"], default="created_at"
    ),
)

_PATH_PARAMS = {
    "workflow_id": "A workflow id (`wf_...`).",
    "block_id": "A block id (`blk_...`, or the id the client chose).",
    "test_id": "A saved test id (`wfnodetest_...`).",
    "eval_id": "A saved test id (`wfnodetest_...`), under SDK 0.0.160's name.",
    "run_id": "A test run id (`wftestrun_...`).",
    "result_id": "A test result id (`wfnodetestrun_...`).",
}

OPERATIONS: dict[tuple[str, str], Operation] = {
    # Service -------------------------------------------------------------------
    ("GET", "/healthz"): Operation(
        "healthz", "The process is up", "service", HealthStatus, authenticated=False
    ),
    ("GET", "/readyz"): Operation(
        "readyz",
        "Ready: the database answers and every migration is applied",
        "service",
        HealthStatus,
        extra=((503, "Not ready: the database or the pending migrations", HealthStatus),),
        authenticated=False,
    ),
    ("GET", "/openapi.json"): Operation(
        "openapi_json",
        "This OpenAPI document",
        "service",
        dict[str, Any],
        authenticated=False,
    ),
    ("GET", "/docs"): Operation(
        "docs_page",
        "A readable page of this document",
        "service",
        str,
        content_type="text/html",
        authenticated=False,
    ),
    # Workflows -----------------------------------------------------------------
    ("POST", "/v1/workflows"): Operation(
        "create_workflow",
        "Create a workflow",
        "workflows",
        Workflow,
        status=201,
        body=CreateWorkflowRequest,
    ),
    ("GET", "/v1/workflows"): Operation(
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
    ("GET", "/v1/workflows/{workflow_id}"): Operation(
        "get_workflow",
        "Get a workflow",
        "workflows",
        Workflow,
        not_found=("workflow_not_found",),
    ),
    ("PATCH", "/v1/workflows/{workflow_id}"): Operation(
        "update_workflow",
        "Rename or describe a workflow",
        "workflows",
        Workflow,
        body=UpdateWorkflowRequest,
        not_found=("workflow_not_found",),
    ),
    ("DELETE", "/v1/workflows/{workflow_id}"): Operation(
        "delete_workflow",
        "Delete a workflow (its runs stay readable)",
        "workflows",
        status=204,
        not_found=("workflow_not_found",),
    ),
    # Blocks --------------------------------------------------------------------
    ("POST", "/v1/workflows/blocks"): Operation(
        "create_block",
        "Add a block to a workflow's draft",
        "blocks",
        Block,
        status=201,
        body=CreateBlockRequest,
        not_found=("workflow_not_found",),
        conflict="`block_id_conflict`: the chosen block `id` is already in use",
    ),
    ("GET", "/v1/workflows/blocks"): Operation(
        "list_blocks",
        "List a workflow's blocks",
        "blocks",
        BlockPage,
        is_list=True,
        query=(Param("workflow_id", "The workflow.", RequiredQueryId, required=True),),
        not_found=("workflow_not_found",),
    ),
    ("GET", "/v1/workflows/blocks/{block_id}"): Operation(
        "get_block", "Get a block", "blocks", Block, not_found=("block_not_found",)
    ),
    ("PATCH", "/v1/workflows/blocks/{block_id}"): Operation(
        "update_block",
        "Change a block (a new draft version of its workflow)",
        "blocks",
        Block,
        body=UpdateBlockRequest,
        not_found=("block_not_found",),
    ),
    ("DELETE", "/v1/workflows/blocks/{block_id}"): Operation(
        "delete_block",
        "Delete a block and its saved tests",
        "blocks",
        status=204,
        not_found=("block_not_found",),
    ),
    # Saved tests ---------------------------------------------------------------
    ("POST", "/v1/workflows/tests"): Operation(
        "create_test",
        "Save a test of one block",
        "tests",
        WorkflowTest,
        status=201,
        body=CreateTestRequest,
        description="A `run_step` source is answered 422 (`not_supported`).",
        not_found=("workflow_not_found", "block_not_found"),
    ),
    ("GET", "/v1/workflows/tests"): Operation(
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
    ("GET", "/v1/workflows/tests/{test_id}"): Operation(
        "get_test", "Get a saved test", "tests", WorkflowTest, not_found=("test_not_found",)
    ),
    ("PATCH", "/v1/workflows/tests/{test_id}"): Operation(
        "update_test",
        "Change a saved test's name, assertion or source",
        "tests",
        WorkflowTest,
        body=UpdateTestRequest,
        description="The target is fixed: sending `target` is answered 422 (`immutable`).",
        not_found=("test_not_found",),
    ),
    ("DELETE", "/v1/workflows/tests/{test_id}"): Operation(
        "delete_test",
        "Delete a saved test (its past runs are kept)",
        "tests",
        status=204,
        not_found=("test_not_found",),
    ),
    # Test runs -----------------------------------------------------------------
    ("POST", "/v1/workflows/tests/runs"): Operation(
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
    ("GET", "/v1/workflows/tests/runs"): Operation(
        "list_runs",
        "List test runs",
        "runs",
        WorkflowTestRunPage,
        is_list=True,
        query=_RUN_FILTERS,
    ),
    ("GET", "/v1/workflows/tests/runs/{run_id}"): Operation(
        "get_run",
        "Get a test run, with its freshness now",
        "runs",
        WorkflowTestRun,
        not_found=("run_not_found",),
    ),
    ("GET", "/v1/workflows/tests/runs/{run_id}/events"): Operation(
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
    ("POST", "/v1/workflows/tests/runs/{run_id}/cancel"): Operation(
        "cancel_run",
        "Cancel a test run that is not terminal",
        "runs",
        WorkflowTestRun,
        not_found=("run_not_found", "run_not_cancellable"),
        conflict="`conflict`: the cancel lost every retry of a race with the run's runners",
    ),
    # Results -------------------------------------------------------------------
    ("GET", "/v1/workflows/tests/results"): Operation(
        "list_results",
        "List a test run's results, in run order",
        "results",
        WorkflowTestResultPage,
        is_list=True,
        query=(Param("run_id", "The test run.", RequiredQueryId, required=True),),
        not_found=("run_not_found",),
    ),
    ("GET", "/v1/workflows/tests/results/{result_id}"): Operation(
        "get_result",
        "Get one test's result in a run",
        "results",
        WorkflowTestResult,
        not_found=("result_not_found",),
    ),
}

TESTS_PREFIX = "/v1/workflows/tests"
EVALS_PREFIX = "/v1/workflows/evals"


def _evals_family(operations: dict[tuple[str, str], Operation]) -> None:
    """Add the `/v1/workflows/evals...` twin of every saved-test operation.

    SDK 0.0.160 calls the same API `workflows.evals`; the same handlers serve both.
    """
    for (method, path), operation in list(operations.items()):
        if path.startswith(TESTS_PREFIX):
            twin = EVALS_PREFIX + path[len(TESTS_PREFIX) :].replace("{test_id}", "{eval_id}")
            operations[(method, twin)] = replace(
                operation,
                operation_id=f"evals_{operation.operation_id}",
                tag="evals",
                description=(
                    f"`{method} {path}` under SDK 0.0.160's name (`eval_id` for `test_id`)."
                    + (f" {operation.description}" if operation.description else "")
                ),
            )


_evals_family(OPERATIONS)

TAGS = (
    ("workflows", "Workflows: what tests run against."),
    ("blocks", "The blocks of a workflow's draft."),
    ("tests", "Saved tests: an assertion on one block's output."),
    ("runs", "Test runs: lifecycle, timing, counts, freshness."),
    ("results", "The result of each test in a run."),
    (
        "evals",
        "The saved tests, runs and results again, under SDK 0.0.160's names"
        " (`workflows.evals`); requests take either name, responses carry both.",
    ),
    ("service", "Health, readiness and this documentation (no API key)."),
)

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>` (what the SDK sends).",
    },
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "Api-Key",
        "description": "`Api-Key: <key>` (what the reference pages send).",
    },
}

# Either scheme is enough: two alternatives, not one requirement of both.
_V1_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyAuth": []}]

_DESCRIPTION = """\
Self-hosted workflow-test runs (the `workflows.tests` API of the `retab` SDK).

Every `/v1` operation needs an API key, as `Authorization: Bearer <key>` or
`Api-Key: <key>`; another organisation's resources answer 404. Errors are JSON:
422 `{"detail": [{"loc", "msg", "type"}]}`, otherwise
`{"detail": {"code", "message", "details"?}}`. Lists page with opaque cursors:
`after` is null exactly on the last page. Every response carries `X-Request-Id`.
"""

_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


# Generation -------------------------------------------------------------------


class UndocumentedRouteError(RuntimeError):
    """A served `/v1` route has no entry in `OPERATIONS`."""


# aiohttp warns when a started application's state changes, so the cache lives
# beside the app, keyed weakly: it goes away with the app.
_CACHE: weakref.WeakKeyDictionary[web.Application, dict[str, Any]] = weakref.WeakKeyDictionary()


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of exactly the routes `app` serves.

    Generated once the router is frozen (its routes can no longer change), then
    cached; before that every call generates afresh. Raises
    `UndocumentedRouteError` if a `/v1` route has no entry in `OPERATIONS`.
    Treat the answer as read-only: it is shared.
    """
    cached = _CACHE.get(app)
    if cached is not None:
        return cached
    document = generate(
        served_routes(app),
        idempotent_posts=idempotency.idempotency in app.middlewares,
        rate_limited=ratelimit.rate_limit in app.middlewares,
    )
    if app.router.frozen:
        _CACHE[app] = document
    return document


def served_routes(app: web.Application) -> list[tuple[str, str]]:
    """The (method, path) pairs `app` serves, in registration order, HEAD left out."""
    served: dict[tuple[str, str], None] = {}
    for route in app.router.routes():
        # aiohttp adds a HEAD route beside every GET: it is not an operation of ours.
        if route.method == hdrs.METH_HEAD or route.resource is None:
            continue
        # The web console's HTML pages are for people, not part of the API.
        if is_console(route.resource.canonical):
            continue
        served[(route.method, route.resource.canonical)] = None
    return list(served)


def generate(
    routes: list[tuple[str, str]], *, idempotent_posts: bool = False, rate_limited: bool = False
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these (method, path) routes.

    `idempotent_posts`: the app runs the `Idempotency-Key` middleware, so every
    `/v1` POST takes the header (and may answer its 400 and 409).
    `rate_limited`: the app runs the per-key rate limit, so every `/v1`
    operation may answer 429 with `Retry-After`.
    """
    operations = [(method, path, _operation_of(method, path)) for method, path in routes]
    types = _types_of(operation for _, _, operation in operations)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    renderer = _Renderer(dict(zip(types, schemas, strict=True)), idempotent_posts, rate_limited)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, operation in operations:
        paths.setdefault(path, {})[method.lower()] = renderer.operation(method, path, operation)
    for component in components.values():
        # msgspec copies docstrings verbatim; their continuation lines are indented.
        if "description" in component:
            component["description"] = inspect.cleandoc(component["description"])
    used_tags = {operation.tag for _, _, operation in operations}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Workflow test runs", "version": _version(), "description": _DESCRIPTION},
        "tags": [{"name": name, "description": text} for name, text in TAGS if name in used_tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": SECURITY_SCHEMES,
            "headers": HEADERS,
        },
    }
    # A JSON round trip: pure JSON values, and no object shared with this module's
    # constants or between operations, so a caller's change stays its own.
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(document))
    return result


HEADERS = {
    "X-Request-Id": {
        "description": "This request's id (the caller's, if safe), for the logs.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before the next request with this API key (at least 1).",
        "schema": {"type": "integer", "minimum": 1},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer of an earlier request"
        " with the same `Idempotency-Key`.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def _operation_of(method: str, path: str) -> Operation:
    operation = OPERATIONS.get((method, path))
    if operation is not None:
        return operation
    if method == hdrs.METH_ANY:
        raise UndocumentedRouteError(f"route `* {path}` answers any method: OpenAPI cannot say so")
    if _is_api(path):
        raise UndocumentedRouteError(
            f"route `{method} {path}` is served but has no entry in"
            " service.openapi.OPERATIONS: add one (body, response, parameters, errors)"
        )
    # Not part of the API proper (e.g. `/metrics`, added by the operator's
    # tooling): documented as existing, answering plain text.
    name = re.sub(r"\W+", "_", f"{method} {path}".lower()).strip("_")
    return Operation(
        name,
        f"{method} {path}",
        "service",
        str,
        content_type="text/plain",
        description="Served outside the API (`/v1`); documented only as plain text.",
        authenticated=False,
    )


def is_console(path: str) -> bool:
    """Is `path` one of the web console's (its pages, forms and static files)?"""
    return path in ("/", "/console") or path.startswith("/console/")


def _is_api(path: str) -> bool:
    # The same test as the edge middleware's: what it authenticates is the API.
    return path == "/v1" or path.startswith("/v1/")


def _types_of(operations: Iterable[Operation]) -> list[Any]:
    """Every type the operations name, once each, in a stable order."""
    found: dict[Any, None] = {}
    for operation in operations:
        if operation.body is not None:
            found[operation.body] = None
        if operation.response is not None:
            found[operation.response] = None
        for _, _, body_type in operation.extra:
            found[body_type] = None
        for _, body_type in operation.alternatives:
            found[body_type] = None
        for param in _query_of(operation):
            found[param.type] = None
    found.update(dict.fromkeys((ErrorResponse, ValidationErrorResponse)))
    return list(found)


def _query_of(operation: Operation) -> tuple[Param, ...]:
    return (*operation.query, *(PAGINATION if operation.is_list else ()))


@dataclass(frozen=True)
class _Renderer:
    """Renders Operation Objects with the schemas msgspec generated."""

    schema_of: dict[Any, Any]
    idempotent_posts: bool
    rate_limited: bool = False

    def operation(self, method: str, path: str, operation: Operation) -> dict[str, Any]:
        """One Operation Object."""
        rendered: dict[str, Any] = {
            "operationId": operation.operation_id,
            "summary": operation.summary,
            "tags": [operation.tag],
        }
        if operation.description:
            rendered["description"] = operation.description
        idempotent = self.idempotent_posts and method == hdrs.METH_POST and _is_api(path)
        parameters = [_path_param(name) for name in _PATH_PARAM.findall(path)]
        parameters += [self._query_param(param) for param in _query_of(operation)]
        if idempotent:
            parameters.append(_IDEMPOTENCY_PARAM)
        if parameters:
            rendered["parameters"] = parameters
        if operation.body is not None:
            rendered["requestBody"] = {"required": True} | self._json(operation.body)
        rendered["responses"] = self._responses(path, operation, idempotent)
        rendered["security"] = _V1_SECURITY if operation.authenticated else []
        return rendered

    def _query_param(self, param: Param) -> dict[str, Any]:
        schema = dict(self.schema_of[param.type])
        if param.enum:
            schema["enum"] = list(param.enum)
        if param.default is not None:
            schema["default"] = param.default
        return {
            "name": param.name,
            "in": "query",
            "required": param.required,
            "description": param.description,
            "schema": schema,
        }

    def _responses(self, path: str, operation: Operation, idempotent: bool) -> dict[str, Any]:
        """The success answer, then every error the operation can give, by status."""
        success: dict[str, Any] = {"description": operation.summary}
        if operation.response is not None:
            success |= self._json(operation.response, operation.content_type)
        for media_type, body_type in operation.alternatives:
            success.setdefault("content", {})[media_type] = {"schema": self.schema_of[body_type]}
        answers: dict[int, dict[str, Any]] = {operation.status: success}
        for status, description, body_type in operation.extra:
            answers[status] = {"description": description} | self._json(body_type)
        # Every error but 422 has the same body; only the reasons differ.
        reasons: dict[int, list[str]] = {}
        if operation.is_list:
            reasons[400] = [
                "`invalid_pagination`: `before` and `after` together",
                "`invalid_cursor`: a cursor this API did not issue",
            ]
        if idempotent:
            reasons.setdefault(400, []).append(
                "`invalid_idempotency_key`: an empty or too long `Idempotency-Key`"
            )
        if operation.authenticated:
            reasons[401] = ["`unauthorized`: no API key, or an unknown one"]
        not_found = [f"`{code}`" for code in operation.not_found]
        if _PATH_PARAM.search(path):
            # The edge answers an id no resource can have (too long, NUL) itself.
            not_found.append("`not_found`")
        if not_found:
            reasons[404] = ["Unknown, or another organisation's: " + ", ".join(not_found)]
        if operation.conflict:
            reasons[409] = [operation.conflict]
        if idempotent:
            reasons.setdefault(409, []).extend(
                [
                    "`idempotency_key_reused`: the `Idempotency-Key` came with another body",
                    "`idempotency_key_in_use`: the first request with this key is still"
                    " being answered; retry later",
                ]
            )
            success["headers"] = {"Idempotent-Replayed": _header_ref("Idempotent-Replayed")}
        if operation.body is not None:
            reasons[413] = ["`request_too_large`: the body is larger than the server accepts"]
        for status, texts in reasons.items():
            answers[status] = {"description": "; ".join(texts) + "."} | self._json(ErrorResponse)
        if self.rate_limited and operation.authenticated:
            answers[429] = {
                "description": "`rate_limited`: this API key's requests per second are used up;"
                " retry after `Retry-After` seconds.",
                "headers": {"Retry-After": _header_ref("Retry-After")},
            } | self._json(ErrorResponse)
        has_query = bool(_query_of(operation))
        if operation.body is not None or has_query:
            inputs = (("body", operation.body is not None), ("query", has_query))
            where = " or ".join(name for name, present in inputs if present)
            answers[422] = {
                "description": f"Validation error: an invalid {where}; `loc` says where."
            } | self._json(ValidationErrorResponse)
        for answer in answers.values():
            answer["headers"] = answer.get("headers", {}) | {
                "X-Request-Id": _header_ref("X-Request-Id")
            }
        return {str(status): answer for status, answer in sorted(answers.items())}

    def _json(self, body_type: Any, media_type: str = "application/json") -> dict[str, Any]:
        return {"content": {media_type: {"schema": self.schema_of[body_type]}}}


_IDEMPOTENCY_PARAM = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "The same key and body within 24 h answers the first response and"
    " creates nothing new; the same key with another body is 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _path_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": _PATH_PARAMS.get(name, f"The `{name}` of the path."),
        "schema": {"type": "string"},
    }


def _version() -> str:
    try:
        return metadata.version("testrun-service")
    except metadata.PackageNotFoundError:
        return "0.0.0"
