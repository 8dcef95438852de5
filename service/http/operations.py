"""The vocabulary of the route table: what an entry says of its operation for OpenAPI.

msgspec generates every request and response schema from the structs the
handlers decode and encode; an `Operation` adds what msgspec cannot know
(summary, status codes, query parameters, which errors an operation answers).
The error and health bodies, built as plain dicts, are declared here as structs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from projections.resources import WorkflowTestResult, WorkflowTestRun
from service import paging
from service.http.feed import RunEventItem
from service.http.handlers.common import MAX_QUERY_ID
from service.models import NO_NUL, Block, ListMetadata, Workflow, WorkflowTest
from service.runs import reads

# Error and health bodies: service/http/errors.py and handlers/health.py build these
# as plain dicts, so their shapes are declared here as structs (and checked
# against real answers by tests/integration/http/test_openapi.py).


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


_DEFAULT_PAGE = paging.PageQuery()

# What the handlers accept as an id in the query (`handlers.common.query_id`).
QueryId = Annotated[str, msgspec.Meta(max_length=MAX_QUERY_ID, pattern=NO_NUL)]
RequiredQueryId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_QUERY_ID, pattern=NO_NUL)
]
# Cursors are unpadded URL-safe base64 (`paging.encode_cursor`).
Cursor = Annotated[str, msgspec.Meta(pattern=paging.CURSOR_PATTERN)]

PAGINATION = (
    Param("before", "Cursor: the page before this one (not with `after`).", Cursor),
    Param("after", "Cursor: the page after this one (not with `before`).", Cursor),
    Param(
        "limit",
        f"Items per page, 1 to {paging.MAX_LIMIT}.",
        Annotated[int, msgspec.Meta(ge=1, le=paging.MAX_LIMIT)],
        default=_DEFAULT_PAGE.limit,
    ),
    Param("order", "Order of creation.", Literal["asc", "desc"], default=_DEFAULT_PAGE.order),
)

RUN_FILTERS = (
    Param("workflow_id", "Only runs of this workflow.", QueryId),
    Param("test_id", "Only runs that include this saved test.", QueryId),
    Param("eval_id", "`test_id` under SDK 0.0.160's name (both: they must agree).", QueryId),
    Param("target_block_id", "Only runs that include a test of this block.", QueryId),
    Param("status", "Only runs in this lifecycle status.", enum=tuple(sorted(reads.STATUSES))),
    Param(
        "exclude_status", "Every run but those in this status.", enum=tuple(sorted(reads.STATUSES))
    ),
    Param("trigger_type", "Only runs started this way.", enum=tuple(sorted(reads.TRIGGERS))),
    Param("from_date", "Created at or after (RFC 3339; no offset means UTC).", datetime),
    Param("to_date", "Created at or before (RFC 3339; no offset means UTC).", datetime),
    Param(
        "sort_by", "The sort key (only `created_at`).", Literal["created_at"], default="created_at"
    ),
)


# The table of the app's routes, by (method, path): set by `routes.add_routes`,
# read by `openapi.openapi_document`.
ROUTE_TABLE: web.AppKey[dict[tuple[str, str], Operation]] = web.AppKey("route_table", dict)
