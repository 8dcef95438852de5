"""The event store's errors."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class of every error the event store raises."""


class ConcurrencyError(EventStoreError):
    """The stream's version is not the one the writer expected.

    Another writer appended first: reload the stream's state, decide again and
    retry, or give up with a conflict.
    """

    def __init__(self, stream_id: str, expected_version: int | None, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.expected_version = expected_version


class IdempotencyConflictError(EventStoreError):
    """Some, but not all, of the appended event ids are already stored, or in another stream."""


class AppendOnlyError(EventStoreError):
    """Something tried to change or delete a stored event."""
