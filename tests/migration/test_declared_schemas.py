"""A database built from the migrations equals one built from the declared schemas.

events/schema.sql, projections/schema.sql and service/schema.sql state the
current schema; the migrations (events/sql, projections/sql, service/sql) are
how a database gets there. Both are built side by side in one database (the
migrated one in `public`, the declared one in a schema of its own) and their
catalogs compared: every table and sequence with its storage parameters, every
column (position, type, nullability, default, identity), every constraint,
index, function (its whole definition) and trigger.
"""

from __future__ import annotations

from importlib import resources

import asyncpg

# The migration runner's own bookkeeping (events/migrations.py), not a component's table.
_EXCLUDED = ["schema_migrations"]

_RELATIONS = """
SELECT c.relname, c.relkind::text, coalesce(c.reloptions, '{}')::text
  FROM pg_class c
 WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND c.relname <> ALL ($2::text[])
   AND NOT (c.relkind = 'S' AND c.relname LIKE ANY (SELECT x || '%' FROM unnest($2::text[]) x))
 ORDER BY c.relname
"""

_COLUMNS = """
SELECT table_name, ordinal_position, column_name, data_type, udt_name, is_nullable,
       column_default, is_identity, identity_generation, character_maximum_length
  FROM information_schema.columns
 WHERE table_schema = $1 AND table_name <> ALL ($2::text[])
 ORDER BY table_name, ordinal_position
"""

_CONSTRAINTS = """
SELECT t.relname, c.conname, c.contype::text,
       replace(pg_get_constraintdef(c.oid), $1 || '.', '')
  FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
 WHERE t.relnamespace = $1::regnamespace AND t.relname <> ALL ($2::text[])
 ORDER BY t.relname, c.conname
"""

_INDEXES = """
SELECT tablename, indexname, replace(indexdef, $1 || '.', '')
  FROM pg_indexes
 WHERE schemaname = $1 AND tablename <> ALL ($2::text[])
 ORDER BY tablename, indexname
"""

_FUNCTIONS = """
SELECT p.proname, pg_get_function_identity_arguments(p.oid),
       replace(pg_get_functiondef(p.oid), $1 || '.', '')
  FROM pg_proc p
 WHERE p.pronamespace = $1::regnamespace AND cardinality($2::text[]) >= 0
 ORDER BY p.proname, 2
"""

_TRIGGERS = """
SELECT c.relname, t.tgname, t.tgenabled::text,
       replace(pg_get_triggerdef(t.oid), $1 || '.', '')
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal
   AND c.relname <> ALL ($2::text[])
 ORDER BY c.relname, t.tgname
"""

CATALOG = {
    "relations": _RELATIONS,
    "columns": _COLUMNS,
    "constraints": _CONSTRAINTS,
    "indexes": _INDEXES,
    "functions": _FUNCTIONS,
    "triggers": _TRIGGERS,
}

DECLARED = (("events", "schema.sql"), ("projections", "schema.sql"), ("service", "schema.sql"))


async def _catalog(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[object, ...]]]:
    return {
        name: [tuple(row) for row in await conn.fetch(query, schema, _EXCLUDED)]
        for name, query in CATALOG.items()
    }


async def _build_declared(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"CREATE SCHEMA {schema}")
    async with conn.transaction():
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        for package, name in DECLARED:
            await conn.execute((resources.files(package) / name).read_text("utf-8"))


async def test_the_migrated_schema_equals_the_declared_schemas(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await _build_declared(conn, "declared")
        migrated = await _catalog(conn, "public")
        declared = await _catalog(conn, "declared")
    for name in CATALOG:
        assert migrated[name], f"no {name} at all: the comparison would prove nothing"
        assert migrated[name] == declared[name], name
    tables = {row[0] for row in migrated["relations"] if row[1] == "r"}
    assert {"events", "streams", "test_runs", "projection_checkpoints", "workflows"} <= tables
    assert {"append_events", "events_refuse_change"} <= {row[0] for row in migrated["functions"]}
    assert {"events_append_only", "events_no_truncate"} <= {r[1] for r in migrated["triggers"]}


async def test_the_comparison_sees_each_kind_of_difference(pool: asyncpg.Pool) -> None:
    """One change of each kind in the declared copy is a difference of that kind."""
    changes = {
        "relations": "ALTER TABLE d.test_queue SET (fillfactor = 90)",
        "columns": "ALTER TABLE d.workflows ALTER COLUMN description DROP NOT NULL",
        "constraints": "ALTER TABLE d.blocks ADD CONSTRAINT blocks_type_check CHECK (type <> '')",
        "indexes": "CREATE INDEX extra_idx ON d.streams (created_at)",
        "functions": "CREATE OR REPLACE FUNCTION d.events_refuse_change() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "triggers": "ALTER TABLE d.events DISABLE TRIGGER events_no_truncate",
    }
    async with pool.acquire() as conn:
        await _build_declared(conn, "d")
        before = await _catalog(conn, "d")
        for kind, statement in changes.items():
            await conn.execute(statement)
            after = await _catalog(conn, "d")
            assert before[kind] != after[kind], kind
            before = after
