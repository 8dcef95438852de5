"""Ordered SQL migrations, applied at start and recorded.

A component (`events`, `projections`, `service`) keeps its migrations as
`sql/NNNN_name.sql` files in its package. Components apply in the order given,
each file once, in its own transaction, under an advisory lock so that servers
and workers starting together migrate exactly once. An applied file whose text
changed is refused: history is never rewritten, a new file is added instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import NamedTuple

import asyncpg

from events import locks

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  text NOT NULL,
    version    integer NOT NULL,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


class Migration(NamedTuple):
    """One SQL file of a component."""

    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """The SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """The database's recorded migrations do not match this release's files."""


def discover(components: Sequence[str]) -> list[Migration]:
    """Every migration of the given packages, in application order."""
    found: list[Migration] = []
    for component in components:
        folder = resources.files(component) / "sql"
        files = sorted(entry.name for entry in folder.iterdir() if _NAME.match(entry.name))
        for name in files:
            match = _NAME.match(name)
            assert match is not None  # noqa: S101  (filtered above)
            sql = (folder / name).read_text(encoding="utf-8")
            found.append(Migration(component, int(match.group(1)), name, sql))
    return found


async def migrate(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", locks.MIGRATIONS)
    try:
        await conn.execute(_CREATE_TABLE)
        recorded = {
            (row["component"], row["version"]): row["checksum"]
            for row in await conn.fetch(
                "SELECT component, version, checksum FROM schema_migrations"
            )
        }
        for migration in migrations:
            key = (migration.component, migration.version)
            if key in recorded:
                if recorded[key] != migration.checksum:
                    name = f"{migration.component}/{migration.name}"
                    msg = f"migration {name} changed after it was applied"
                    raise MigrationError(msg)
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, checksum)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.component,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied.append(f"{migration.component}/{migration.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", locks.MIGRATIONS)
    return applied


async def pending(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations not yet applied (for readiness checks)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return list(migrations)
    recorded = {
        (row["component"], row["version"])
        for row in await conn.fetch("SELECT component, version FROM schema_migrations")
    }
    return [m for m in migrations if (m.component, m.version) not in recorded]
