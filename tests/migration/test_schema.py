"""The read models built by the migrations equal the ones the rebuild declares."""

from __future__ import annotations

import asyncpg

from projections.rebuild import declared_schema, rebuild

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

_CONSTRAINTS = """
SELECT t.relname, c.conname, c.contype::text, pg_get_constraintdef(c.oid)
  FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
 WHERE t.relnamespace = $1::regnamespace AND t.relname = ANY ($2::text[])
 ORDER BY t.relname, c.conname
"""

_STORAGE = """
SELECT t.relname, coalesce(t.reloptions, '{}')::text
  FROM pg_class t
 WHERE t.relnamespace = $1::regnamespace AND t.relname = ANY ($2::text[])
 ORDER BY t.relname
"""

TABLES = ["test_runs", "test_results", "test_queue"]
QUERIES = (_COLUMNS, _INDEXES, _CONSTRAINTS, _STORAGE)


async def test_migrated_read_models_equal_the_declared_ones(pool: asyncpg.Pool) -> None:
    """Columns, types, nullability, defaults, indexes and storage parameters (fillfactor)
    agree, so a swap changes no schema."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE SCHEMA declared")
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO declared")
            await conn.execute(declared_schema())
        for query in QUERIES:
            migrated = [tuple(r) for r in await conn.fetch(query, "public", TABLES)]
            declared = [tuple(r) for r in await conn.fetch(query, "declared", TABLES)]
            assert migrated
            assert migrated == declared


async def test_a_rebuild_swaps_in_the_declared_keys_and_indexes(pool: asyncpg.Pool) -> None:
    """The rebuild loads its tables without keys, indexes or fillfactor and restores them
    after: the swapped-in tables have every one of them, as declared."""

    async def schema(conn: asyncpg.Connection, name: str) -> list[tuple[object, ...]]:
        return [
            tuple(r)
            for query in QUERIES
            for r in await conn.fetch(query, name, TABLES)
        ]

    report = await rebuild(pool)
    assert report.swapped
    async with pool.acquire() as conn:
        await conn.execute("CREATE SCHEMA declared")
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO declared")
            await conn.execute(declared_schema())
        rebuilt = await schema(conn, "public")
        assert [r for r in rebuilt if r[2:3] == ("p",)], "no primary keys at all"
        assert ("test_results", "{fillfactor=40}") in rebuilt
        assert rebuilt == await schema(conn, "declared")
