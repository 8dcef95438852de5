"""API errors, in the reference API's (FastAPI's) format.

Validation: 422 `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`.
Everything else: `{"detail": {"code": ..., "message": ..., "details": ...}}`.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from service.domain import Conflict, DomainError, Invalid, NotFound, Refused

_encode = msgspec.json.Encoder().encode
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


class ApiError(Exception):
    """An error answered to the client as JSON."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def response(self) -> web.Response:
        """The JSON response of this error."""
        detail: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            detail["details"] = self.details
        return json_response({"detail": detail}, status=self.status)


class NotFoundError(ApiError):
    """404: unknown, or another organisation's (never 403, so ids do not leak)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(404, code, message)


class ValidationFailedError(Exception):
    """422 with FastAPI's list of problems."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(problems[0]["msg"] if problems else "validation failed")
        self.problems = problems

    @classmethod
    def single(cls, loc: list[str | int], msg: str, kind: str) -> ValidationFailedError:
        """One problem at one location."""
        return cls([{"loc": loc, "msg": msg, "type": kind}])

    def response(self) -> web.Response:
        """The 422 response."""
        return json_response({"detail": self.problems}, status=422)


def from_msgspec(
    error: msgspec.ValidationError | msgspec.DecodeError, where: str
) -> ValidationFailedError:
    """Turn msgspec's error (`Expected str, got int - at $.scope.test_id`) into a 422."""
    text = str(error)
    loc: list[str | int] = [where]
    match = _PATH.search(text)
    if match:
        text = text[: match.start()]
        for name, index in _SEGMENT.findall(match.group("path")):
            loc.append(name if name else int(index) if index else "...")
    if isinstance(error, msgspec.ValidationError):
        kind = "missing" if text.startswith("Object missing required field") else "value_error"
    else:
        kind = "json_invalid"
        text = f"JSON decode error: {text}"
    return ValidationFailedError.single(loc, text, kind)


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON response encoded by msgspec."""
    return web.Response(body=_encode(body), status=status, content_type="application/json")


# The status of each domain error; an unknown kind is the client's fault (400).
_STATUS_OF: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Refused: 400}


def from_domain(error: DomainError) -> web.Response:
    """The response of a domain error (service.domain): 404, 409, 400, or 422 with locations."""
    if isinstance(error, Invalid):
        return ValidationFailedError(
            [{"loc": p.location, "msg": p.message, "type": p.kind} for p in error.problems]
        ).response()
    status = _STATUS_OF.get(type(error), 400)
    return ApiError(status, error.code, error.message, error.details).response()
