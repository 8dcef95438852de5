"""The database boundary: pools, migrations, the embedded PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import structlog

from events import migrations
from events.store import init_connection

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


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, **kwargs: Any
) -> asyncpg.Pool:
    """A pool whose connections speak the event store's codecs."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        server_settings=SERVER_SETTINGS,
        connection_class=ServiceConnection,
        **kwargs,
    )
    assert pool is not None  # noqa: S101  (create_pool returns a pool when awaited)
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
