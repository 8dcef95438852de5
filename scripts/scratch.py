"""Scratch databases and ports for the scripts that measure (bench, load)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(dsn: str, name: str) -> str:
    """The same server's DSN for another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def admin_dsn(embedded: str) -> str:
    """Where to create databases: DATABASE_URL, TEST_DATABASE_URL, 127.0.0.1:5432, or
    an embedded PostgreSQL in `.data/<embedded>` when none answers."""
    explicit = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit
    try:
        conn = await asyncpg.connect(LOCAL, timeout=3)
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError):
        from service.db import start_embedded  # noqa: PLC0415

        return start_embedded(ROOT / ".data" / embedded)
    return LOCAL


async def _on_server(admin: str, statement: str) -> None:
    """Run one statement on the admin DSN's server (outside any transaction)."""
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(admin: str, name: str) -> str:
    """A new, migrated database on the admin DSN's server; returns its DSN."""
    await _on_server(admin, f'CREATE DATABASE "{name}"')
    dsn = with_database(admin, name)
    from service import db  # noqa: PLC0415

    await db.migrate(dsn)
    return dsn


async def drop_database(admin: str, name: str) -> None:
    """Drop a scratch database, whoever is still connected."""
    await _on_server(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
