"""Domain errors: what the registry, run and operations code raise when a request
cannot be served. They say what went wrong (not found, conflict, invalid at a
location, refused) and carry a stable code; they know nothing of HTTP.
`service.http.errors` alone maps them to responses (404, 409, 422, 400).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the domain refuses, with a stable `code` and a readable `message`."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class NotFound(DomainError):
    """Unknown, or another organisation's (the two are never told apart)."""


class Conflict(DomainError):
    """The state of what exists forbids it (an id already in use)."""


class Refused(DomainError):
    """A malformed request that is not about a field of the body (a cursor we never issued)."""


class Problem:
    """One invalid value: where it is (`["body", "scope"]`), what is wrong, its kind."""

    __slots__ = ("kind", "location", "message")

    def __init__(self, location: list[str | int], message: str, kind: str) -> None:
        self.location = location
        self.message = message
        self.kind = kind


class Invalid(DomainError):
    """Values that break a rule the types cannot state, each at its location."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0].message if problems else "validation failed"
        super().__init__("validation_failed", first)
        self.problems = problems

    @classmethod
    def at(cls, location: list[str | int], message: str, kind: str) -> Invalid:
        """One invalid value at one location."""
        return cls([Problem(location, message, kind)])
