"""The API's OpenAPI 3.1 document, generated from the route table.

Every request and response schema comes from msgspec (`schema_components`) on
the very structs that `decode_body` decodes and the handlers encode, so the
document cannot drift from the code. What msgspec cannot know (status codes,
query parameters, which errors an operation answers) is each route's
`Operation` in the one route table (service.http.routes.ROUTES). The document
lists exactly the routes the app serves: a `/v1` route without an operation is
an error at generation time, so a new endpoint cannot be forgotten.
"""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import msgspec
from aiohttp import hdrs, web

from service.http import idempotency, ratelimit
from service.http.operations import (
    PAGINATION,
    ROUTE_TABLE,
    ErrorResponse,
    Operation,
    Param,
    ValidationErrorResponse,
)

REF_TEMPLATE = "#/components/schemas/{name}"

_PATH_PARAMS = {
    "workflow_id": "A workflow id (`wf_...`).",
    "block_id": "A block id (`blk_...`, or the id the client chose).",
    "test_id": "A saved test id (`wfnodetest_...`).",
    "eval_id": "A saved test id (`wfnodetest_...`), under SDK 0.0.160's name.",
    "run_id": "A test run id (`wftestrun_...`).",
    "result_id": "A test result id (`wfnodetestrun_...`).",
}

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
    """A served `/v1` route has no operation in the route table."""


# aiohttp warns when a started application's state changes, so the cache lives
# beside the app, keyed weakly: it goes away with the app.
_CACHE: weakref.WeakKeyDictionary[web.Application, dict[str, Any]] = weakref.WeakKeyDictionary()


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of exactly the routes `app` serves.

    Generated once the router is frozen (its routes can no longer change), then
    cached; before that every call generates afresh. Raises
    `UndocumentedRouteError` if a `/v1` route has no operation in the route table.
    Treat the answer as read-only: it is shared.
    """
    cached = _CACHE.get(app)
    if cached is not None:
        return cached
    table: dict[tuple[str, str], Operation] = app.get(ROUTE_TABLE, {})
    document = generate(
        served_routes(app),
        table,
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
    routes: list[tuple[str, str]],
    table: Mapping[tuple[str, str], Operation],
    *,
    idempotent_posts: bool = False,
    rate_limited: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these (method, path) routes, with their operations
    from `table` (the route table's, by method and path).

    `idempotent_posts`: the app runs the `Idempotency-Key` middleware, so every
    `/v1` POST takes the header (and may answer its 400 and 409).
    `rate_limited`: the app runs the per-key rate limit, so every `/v1`
    operation may answer 429 with `Retry-After`.
    """
    operations = [(method, path, _operation_of(table, method, path)) for method, path in routes]
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


def _operation_of(
    table: Mapping[tuple[str, str], Operation], method: str, path: str
) -> Operation:
    operation = table.get((method, path))
    if operation is not None:
        return operation
    if method == hdrs.METH_ANY:
        raise UndocumentedRouteError(f"route `* {path}` answers any method: OpenAPI cannot say so")
    if _is_api(path):
        raise UndocumentedRouteError(
            f"route `{method} {path}` is served but has no operation in the route table"
            " (service.http.routes.ROUTES): add one (body, response, parameters, errors)"
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
