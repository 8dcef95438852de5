"""The read models built by the migrations equal the ones the rebuild declares."""

from __future__ import annotations

import asyncpg

from projections.rebuild import declared_schema

_COLUMNS = """
SELECT table_name, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = $1 AND table_name = ANY ($2::text[])
 ORDER BY table_name, ordinal_position
"""

_INDEXES = """
SELECT tablename, indexname, replace(indexdef, $1 || '.', '') AS definition
  FROM pg_indexes
 WHERE schemaname = $1 AND tablename = ANY ($2::text[])
 ORDER BY tablename, indexname
"""

TABLES = ["test_runs", "test_results", "test_queue"]


async def test_migrated_read_models_equal_the_declared_ones(pool: asyncpg.Pool) -> None:
    """Columns, types, nullability, defaults and indexes agree, so a swap changes no schema."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE SCHEMA declared")
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO declared")
            await conn.execute(declared_schema())
        for query in (_COLUMNS, _INDEXES):
            migrated = [tuple(r) for r in await conn.fetch(query, "public", TABLES)]
            declared = [tuple(r) for r in await conn.fetch(query, "declared", TABLES)]
            assert migrated
            assert migrated == declared
