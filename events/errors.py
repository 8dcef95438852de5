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


class StaleTransactionError(ConcurrencyError):
    """A transaction newer than the appender's appended to the stream last.

    A stream's versions must rise with the ids of the transactions that append
    them, or readers of the feed (ordered by transaction id) would see them out
    of order. A transaction draws its id at its first write, so one that wrote
    something else before appending can be older than the stream's last
    appender. Retry in a new transaction (reload, decide again): it draws a
    newer id. Writers that lock their aggregate before writing anything never
    see this.
    """


class IdempotencyConflictError(EventStoreError):
    """Stored event ids were appended again, but not as the same append.

    The same append is all of its events, in the same order, at consecutive
    versions of the same stream, with the same type, payload and metadata. The
    message names the first event that differs, its stream and its version.
    """


class DuplicateEventIdError(EventStoreError, ValueError):
    """The same event id appears twice in one append: a caller's bug, never retried."""


class AppendOnlyError(EventStoreError):
    """Something tried to change or delete a stored event."""
