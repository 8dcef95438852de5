"""When the database cannot answer now: which errors those are, the 503 they become, backoff.

A request that cannot get a connection within `DB_ACQUIRE_TIMEOUT_S` (the pool
is exhausted, or connecting does not finish), whose statement ran past
`DB_STATEMENT_TIMEOUT_MS`, or whose connection broke (PostgreSQL restarting,
refusing connections, out of connection slots) is answered at once with
503 `service_unavailable` and `Retry-After`, instead of hanging or a 500: the
client may simply try again. The background loops (runner, projection leader,
feed) meet the same errors; they log, wait with `events.retry.Backoff`, and carry on.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from service.db import DatabaseUnreachableError
from service.http.errors import ApiError

# Seconds a client is told to wait before retrying: about the time a pool
# needs to free a connection, or PostgreSQL to come back from a restart.
RETRY_AFTER_S = 2

# Errors meaning "the database cannot serve this now" rather than "this request is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    # The pool's acquire timeout (asyncio.TimeoutError is TimeoutError; a
    # body that arrives too slowly is answered 408 before any handler runs).
    TimeoutError,
    # The pool could not connect (refused, reset, unresolvable). Not any
    # OSError: a client that leaves mid-request raises ConnectionResetError too.
    DatabaseUnreachableError,
    # 08xxx: the connection failed or was lost mid-query.
    asyncpg.PostgresConnectionError,
    # 57xxx: statement_timeout or a cancel (57014), admin or crash shutdown,
    # "the database system is starting up / shutting down" (57P0x).
    asyncpg.exceptions.OperatorInterventionError,
    # 53xxx: too many connections, out of memory, disk full.
    asyncpg.exceptions.InsufficientResourcesError,
)


def unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot answer now (a 503), not a bug (a 500)."""
    if isinstance(error, _UNAVAILABLE):
        return True
    if isinstance(error, asyncpg.exceptions.InternalClientError):
        # "cannot switch to state N; another operation is in progress": a pooled
        # connection that PostgreSQL is cutting (a restart) handed out before
        # the driver noticed. The next try gets a new connection.
        return True
    # asyncpg says so for a call on a connection that was closed under it, and
    # for a pool closing during shutdown.
    return isinstance(error, asyncpg.InterfaceError) and (
        "closed" in str(error) or "closing" in str(error)
    )


def response(error: BaseException) -> web.Response:
    """The 503 answer for an `unavailable` error, with `Retry-After`."""
    if isinstance(error, TimeoutError):
        message = "The database did not answer in time; retry later"
    elif isinstance(error, asyncpg.exceptions.QueryCanceledError):
        message = "The query took too long and was cancelled; retry later"
    else:
        message = "The database is unavailable; retry later"
    answer = ApiError(503, "service_unavailable", message).response()
    answer.headers["Retry-After"] = str(RETRY_AFTER_S)
    return answer
