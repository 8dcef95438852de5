"""The database boundary: pools, migrations, the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from events import migrations
from events.connection import init_connection

log = structlog.get_logger(__name__)

COMPONENTS = ("events", "projections", "service")

# Every connection of the service: an abandoned transaction must not hold back
# the commit-order horizon of read_all (or locks) for long.
SERVER_SETTINGS = {
    "application_name": "testrun-service",
    "idle_in_transaction_session_timeout": "60000",
}


def all_migrations() -> list[migrations.Migration]:
    """Every migration of every component, in order."""
    return migrations.discover(COMPONENTS)


async def migrate(dsn: str) -> list[str]:
    """Apply the pending migrations to the database at `dsn`; return their names."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrations.migrate(conn, all_migrations())
    finally:
        await conn.close()
    if applied:
        log.info("migrations_applied", migrations=applied)
    return applied


class ServiceConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without the reset round trip.

    The service keeps no session state on pooled connections (settings are
    `SET LOCAL`, advisory locks are transaction-level, LISTEN uses a dedicated
    connection), and asyncpg still rolls back an open transaction on release.
    """

    def get_reset_query(self) -> str:
        """No reset query: see the class docstring."""
        return ""


class DatabaseUnreachableError(ConnectionError):
    """The pool could not open a connection to PostgreSQL (refused, reset, unresolvable).

    A distinct type, so that the edge tells the database's network failures
    from the client's own (a client that leaves mid-request raises
    `ConnectionResetError` too).
    """


class ServicePool(asyncpg.Pool):  # type: ignore[misc]
    """A pool that serves waiting callers in order, each within a default timeout.

    `pool.fetch(...)` and friends acquire without a timeout, so without one a
    request would wait for a free connection (or for a database that does not
    answer a connection attempt) forever. With it, the wait ends in
    `TimeoutError`, which the edge answers as 503 with `Retry-After`.

    asyncpg's own wait (an asyncio.Queue) lets a caller that arrives just as a
    connection is released take it from the caller that was woken for it, which
    then waits again at the back of the line: under load (32 requests on 10
    connections) a few requests waited hundreds of milliseconds while the median
    took 3. A fair semaphore with one permit per connection now decides who goes
    next, first come first served; whoever holds a permit finds a connection free.
    """

    def __init__(self, *args: Any, acquire_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout
        self._turns = asyncio.Semaphore(kwargs.get("max_size", 10))
        # The connections handed out, each holding a turn until its release.
        self._with_turn: set[Any] = set()

    def acquire(self, *, timeout: float | None = None) -> Any:
        """Acquire a connection, within `timeout` or else the pool's `acquire_timeout`."""
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109  (asyncpg's signature)
        async with asyncio.timeout(timeout):
            await self._turns.acquire()
            try:
                connection = await super()._acquire(None)
            except OSError as error:
                self._turns.release()
                raise DatabaseUnreachableError(f"{type(error).__name__}: {error}") from error
            except BaseException:
                self._turns.release()
                raise
            self._with_turn.add(connection)
            return connection

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Give a connection back, and its turn to the next caller in line.

        The turn is the caller's, not the connection's: a connection that died
        while held (PostgreSQL restarting) is already back in asyncpg's queue,
        and its turn still comes back here, once.
        """
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if connection in self._with_turn:
                self._with_turn.discard(connection)
                self._turns.release()


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    acquire_timeout_s: float | None = None,
    statement_timeout_ms: int | None = None,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections speak the event store's codecs.

    Args:
        dsn: the database.
        min_size: connections kept open.
        max_size: most connections open at once.
        acquire_timeout_s: the longest wait for a connection (including
            connecting); None waits as long as it takes (scripts, admin work).
        statement_timeout_ms: PostgreSQL's `statement_timeout` on every
            connection (a statement running longer is cancelled); None or 0
            sets none, so long admin work (rebuilds, exports) is never cut.
        kwargs: more `asyncpg.Pool` or connection arguments.
    """
    settings = dict(SERVER_SETTINGS)
    if statement_timeout_ms:
        settings["statement_timeout"] = str(statement_timeout_ms)
    pool = ServicePool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        init=init_connection,
        server_settings=settings,
        connection_class=ServiceConnection,
        record_class=asyncpg.Record,
        loop=None,
        acquire_timeout=acquire_timeout_s,
        **kwargs,
    )
    await pool
    return pool


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; return its DSN.

    pgserver counts the processes that use it and stops it when the last one exits.
    """
    from pgserver import get_server  # type: ignore[attr-defined]  # noqa: PLC0415

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    uri = server.get_uri()
    assert isinstance(uri, str)  # noqa: S101
    log.info("embedded_postgres_started", data_dir=str(data_dir))
    return uri
