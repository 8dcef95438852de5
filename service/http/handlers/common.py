"""What every handler needs: the app's pool and store, body decoding, event metadata."""

from __future__ import annotations

from typing import Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web

from events.store import EventStore
from events.types import Metadata
from service.http.errors import ValidationFailedError, from_msgspec, json_response
from service.http.middleware import REQUEST_ID, principal

POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", EventStore)

T = TypeVar("T")

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

# The longest id a query parameter may name (the edge answers longer path ids 404).
MAX_QUERY_ID = 255


async def decode_body(request: web.Request, body_type: type[T]) -> T:
    """The request body decoded into `body_type`, or a 422 naming the JSON path."""
    raw = await request.read()
    if not raw.strip():
        raise ValidationFailedError.single(["body"], "Field required", "missing")
    try:
        # msgspec checks the UTF-8 of what it decodes, not of an unknown key it skips.
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationFailedError.single(
            ["body"], f"JSON decode error: invalid UTF-8: {error.reason}", "json_invalid"
        ) from error
    decoder = _decoders.get(body_type)
    if decoder is None:
        decoder = _decoders[body_type] = msgspec.json.Decoder(body_type)
    try:
        result: T = decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise from_msgspec(error, "body") from error
    except RecursionError as error:
        raise ValidationFailedError.single(
            ["body"], "JSON nested too deeply", "json_invalid"
        ) from error
    except UnicodeDecodeError as error:
        raise ValidationFailedError.single(
            ["body"], f"JSON decode error: invalid UTF-8: {error.reason}", "json_invalid"
        ) from error
    return result


def metadata(request: web.Request) -> Metadata:
    """Event metadata for a command run by this request: never the key itself."""
    request_id = request[REQUEST_ID]
    return Metadata(
        request_id=request_id,
        correlation_id=request.headers.get("X-Correlation-Id", request_id)[:128],
        actor=principal(request).api_key_id,
    )


def organisation(request: web.Request) -> str:
    """The caller's organisation."""
    return principal(request).organisation_id


def required_query(request: web.Request, name: str) -> str:
    """A required id in the query, or a 422 naming it."""
    value = query_id(request, name)
    if value is None:
        raise ValidationFailedError.single(["query", name], "Field required", "missing")
    return value


def query_id(request: web.Request, name: str) -> str | None:
    """An id in the query (absent or empty: None), or a 422 when no id can look like it.

    PostgreSQL text cannot hold a NUL, and no id is that long: refused here
    rather than sent to the database.
    """
    value = request.query.get(name)
    if not value:
        return None
    if len(value) > MAX_QUERY_ID or "\x00" in value:
        raise ValidationFailedError.single(
            ["query", name],
            f"{name} must be an id: at most {MAX_QUERY_ID} characters, without NUL",
            "value_error",
        )
    return value


def page_response(data: list[Any], list_metadata: Any) -> web.Response:
    """A list page in the SPEC's envelope."""
    return json_response({"data": data, "list_metadata": list_metadata})
