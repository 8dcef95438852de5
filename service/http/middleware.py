"""The edge of every request: request id, structured log line, auth, errors as JSON."""

from __future__ import annotations

import re
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from aiohttp import hdrs, web

from events.errors import ConcurrencyError, IdempotencyConflictError
from service.domain import DomainError
from service.http import availability, transport
from service.http.errors import ApiError, ValidationFailedError, from_domain
from service.http.handlers import unknown
from service.ops.keys import KeyLookup, Principal

log = structlog.get_logger("service.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEYS = web.AppKey("keys", KeyLookup)
PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def _unusable_id(value: str) -> bool:
    # No resource has such an id: answer 404 before PostgreSQL refuses the text.
    return len(value) > 255 or "\x00" in value


# Per app: the methods of each fixed path (see `_fixed_path_methods`); weak, so it
# goes away with the app, and filled only once the router is frozen.
_FIXED_PATHS: weakref.WeakKeyDictionary[web.Application, dict[str, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def _fixed_path_methods(request: web.Request) -> frozenset[str] | None:
    """The methods of the fixed route at exactly this path, if there is one.

    aiohttp tries the `{id}` routes too when a fixed path does not serve the
    method: `PATCH /v1/workflows/blocks` would update a workflow whose id is
    `blocks`, and a 405's `Allow` would merge the methods of both routes. A fixed
    path owns its methods: any other is a 405 that lists exactly them.
    """
    app = request.app
    paths = _FIXED_PATHS.get(app)
    if paths is None:
        found: dict[str, set[str]] = {}
        for resource in app.router.resources():
            if isinstance(resource, web.PlainResource):
                methods = found.setdefault(resource.canonical, set())
                methods.update(route.method for route in resource)
        paths = {path: frozenset(methods) for path, methods in found.items()}
        if app.router.frozen:
            _FIXED_PATHS[app] = paths
    return paths.get(request.path)


def principal(request: web.Request) -> Principal:
    """The authenticated caller of a `/v1` request."""
    found: Principal = request[PRINCIPAL]
    return found


def _presented_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = request.headers.get("Api-Key", "").strip()
    return api_key or None


async def _authenticate(request: web.Request) -> None:
    key = _presented_key(request)
    if key is None:
        raise ApiError(
            401, "unauthorized", "Missing API key: send `Authorization: Bearer <key>` or `Api-Key`"
        )
    found = await request.app[KEYS].resolve(key)
    if found is None:
        raise ApiError(401, "unauthorized", "Invalid API key")
    request[PRINCIPAL] = found
    structlog.contextvars.bind_contextvars(organisation_id=found.organisation_id)


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id, authenticate `/v1`, turn every error into SPEC.md's JSON."""
    incoming = request.headers.get("X-Request-Id", "")
    # 32 random hex digits, as uuid4().hex, without building a pure-Python UUID.
    request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else secrets.token_hex(16)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        if request.path == "/v1" or request.path.startswith("/v1/"):
            await _authenticate(request)
        fixed = _fixed_path_methods(request)
        if fixed is not None and not {request.method, hdrs.METH_ANY} & fixed:
            raise web.HTTPMethodNotAllowed(request.method, fixed)
        if any(_unusable_id(value) for value in request.match_info.values()):
            raise ApiError(404, "not_found", "Not Found")
        refused = await transport.receive_body(request, transport.limits(request.app))
        response = refused if refused is not None else await handler(request)
    except (ApiError, ValidationFailedError) as error:
        response = error.response()
    except DomainError as error:
        response = from_domain(error)
    except (ConcurrencyError, IdempotencyConflictError) as error:
        # The command lost a race with another writer of the same run, every try
        # (StaleTransactionError is one too), or stored event ids came back as
        # another append: nothing was written, the client may retry.
        response = ApiError(409, "conflict", str(error)).response()
    except asyncpg.DataError as error:
        # A value PostgreSQL cannot store (a NUL character in text, a number out
        # of range) that the types at the edge let through: the client's fault.
        problem = {
            "loc": ["body"],
            "msg": f"value cannot be stored: {error}",
            "type": "value_error",
        }
        response = ValidationFailedError([problem]).response()
    except web.HTTPException as error:
        code = _STATUS_CODES.get(error.status, "http_error")
        unknown_route = unknown.unknown_route(request, error.status)
        response = (unknown_route or ApiError(error.status, code, error.reason)).response()
        if error.status == 405:
            response.headers["Allow"] = error.headers.get("Allow", "")
    except Exception as error:
        if transport.client_left(request, error):
            # Not an error of ours: nobody is there to answer, and no alert should fire.
            log.info(
                "client_disconnected",
                method=request.method,
                path=request.path,
                error=f"{type(error).__name__}: {error}",
            )
            response = web.Response(
                status=transport.CLIENT_GONE_STATUS, reason="Client Closed Request"
            )
        elif availability.unavailable(error):
            # The database cannot answer now (pool exhausted, too slow, restarting):
            # the client may retry, so a 503 with Retry-After rather than a 500.
            log.warning("database_unavailable", error=f"{type(error).__name__}: {error}")
            response = availability.response(error)
        else:
            log.exception("unhandled_error", method=request.method, path=request.path)
            response = ApiError(500, "internal_error", "Internal server error").response()
    response.headers["X-Request-Id"] = request_id
    route = request.match_info.route.resource
    log.info(
        "request_finished",
        method=request.method,
        route=route.canonical if route is not None else request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response
