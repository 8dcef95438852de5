"""`scripts/keys`: create, list and revoke API keys; only hashes are ever stored."""

from __future__ import annotations

import asyncpg

from service.ops.keys import KeyLookup, hash_key
from tests.helpers import run_script


async def test_create_list_and_revoke(pool: asyncpg.Pool, database_url: str) -> None:
    """A created key resolves to its organisation, is listed without its secret, and revokes."""
    created = run_script(
        "keys", "create", "--new-organisation", "Acme", "--name", "ci", database_url=database_url
    )
    assert 0 == created.returncode, created.stderr
    header, key = created.stdout.strip().splitlines()
    key_id = header.split()[1]
    organisation_id = header.split()[4]
    assert key.startswith("rtk_")
    stored = await pool.fetchrow(
        "SELECT key_hash, organisation_id FROM api_keys WHERE id = $1", key_id
    )
    assert hash_key(key) == stored["key_hash"]
    assert organisation_id == stored["organisation_id"]
    # The key itself appears in no column of any key row (the whole row as text).
    assert 0 == await pool.fetchval(
        "SELECT count(*) FROM api_keys k WHERE k::text LIKE '%' || $1 || '%'", key
    )
    principal = await KeyLookup(pool).resolve(key)
    assert principal is not None
    assert organisation_id == principal.organisation_id

    second = run_script(
        "keys", "create", "--organisation", organisation_id, database_url=database_url
    )
    assert 0 == second.returncode, second.stderr
    listed = run_script("keys", "list", database_url=database_url)
    assert 0 == listed.returncode
    assert 2 == listed.stdout.count(organisation_id)
    assert key not in listed.stdout

    revoked = run_script("keys", "revoke", key_id, database_url=database_url)
    assert 0 == revoked.returncode, revoked.stderr
    assert await KeyLookup(pool).resolve(key) is None
    again = run_script("keys", "revoke", key_id, database_url=database_url)
    assert 2 == again.returncode
    assert "revoked" in run_script("keys", "list", database_url=database_url).stdout


async def test_bad_key_commands_fail_cleanly(database_url: str) -> None:
    """An unknown organisation, or no organisation at all, is refused without a traceback."""
    unknown = run_script("keys", "create", "--organisation", "org_nope", database_url=database_url)
    assert 2 == unknown.returncode
    assert "Traceback" not in unknown.stderr
    missing = run_script("keys", "create", database_url=database_url)
    assert 2 == missing.returncode
    assert "--organisation" in missing.stderr
