"""API keys: stored as SHA-256 hashes only; looked up by hash; bootstrap on first start."""

from __future__ import annotations

import hashlib
import secrets
import time

import asyncpg

from events import locks
from service.registry import ids

_LONGEST_KEY = 1024  # longer presented keys are refused without hashing or a query
_CACHE_MOST = 10_000  # valid keys remembered at once, at most


class Principal:
    """Who is calling: an organisation, through one of its keys."""

    __slots__ = ("api_key_id", "organisation_id")

    def __init__(self, organisation_id: str, api_key_id: str) -> None:
        self.organisation_id = organisation_id
        self.api_key_id = api_key_id


def new_key() -> str:
    """A fresh API key (shown once; only its hash is stored)."""
    return "rtk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyLookup:
    """Resolve keys to principals by the key's hash, remembering valid keys briefly.

    The key is compared only through its SHA-256 (a unique index lookup), never
    as text, so the time taken says nothing about the key. A valid key is
    remembered for `cache_s` seconds (KEY_CACHE_S), which saves a database round
    trip on nearly every request; so a revoked key is refused by every server
    within `cache_s` (0: from the next request on). Unknown and revoked keys are
    never remembered: they cost a query each time (rate limiting bounds that).
    """

    def __init__(self, pool: asyncpg.Pool, cache_s: float = 1.0) -> None:
        self._pool = pool
        self._cache_s = cache_s
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def resolve(self, key: str) -> Principal | None:
        """The principal of a key, or None when it is unknown or revoked."""
        if len(key) > _LONGEST_KEY:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._pool.fetchrow(
            "SELECT id, organisation_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        if row is None:
            self._cache.pop(digest, None)
            return None
        principal = Principal(row["organisation_id"], row["id"])
        if self._cache_s > 0:
            if len(self._cache) >= _CACHE_MOST:
                self._cache.clear()
            self._cache[digest] = (now + self._cache_s, principal)
        return principal


async def create_organisation(conn: asyncpg.Connection, name: str) -> str:
    """A new organisation; returns its id."""
    organisation_id = ids.new_id(ids.ORGANISATION)
    await conn.execute(
        "INSERT INTO organisations (id, name) VALUES ($1, $2)", organisation_id, name
    )
    return organisation_id


async def store_key(conn: asyncpg.Connection, organisation_id: str, key: str, name: str) -> str:
    """Record a key (its hash) for an organisation; returns the key's id."""
    key_id = ids.new_id(ids.API_KEY)
    await conn.execute(
        "INSERT INTO api_keys (id, organisation_id, key_hash, name) VALUES ($1, $2, $3, $4)",
        key_id,
        organisation_id,
        hash_key(key),
        name,
    )
    return key_id


async def bootstrap(pool: asyncpg.Pool, configured_key: str | None) -> str | None:
    """Make sure someone can call the API.

    With `configured_key` (BOOTSTRAP_API_KEY): register it, once, for the first
    organisation (created if there is none). Without: on a database with no key
    at all, create an organisation and a key and return the key, to be shown once.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", locks.BOOTSTRAP)
        if configured_key is not None:
            known = await conn.fetchval(
                "SELECT 1 FROM api_keys WHERE key_hash = $1", hash_key(configured_key)
            )
            if known is None:
                organisation_id = await conn.fetchval(
                    "SELECT id FROM organisations ORDER BY created_at, id LIMIT 1"
                ) or await create_organisation(conn, "default")
                await store_key(conn, organisation_id, configured_key, "bootstrap")
            return None
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys)"):
            return None
        organisation_id = await create_organisation(conn, "default")
        key = new_key()
        await store_key(conn, organisation_id, key, "bootstrap")
        return key


async def create_key(
    conn: asyncpg.Connection,
    *,
    organisation_id: str | None = None,
    new_organisation: str | None = None,
    name: str = "",
) -> tuple[str, str, str]:
    """A new key for an organisation (an existing one, or a new one by name).

    Returns `(key, key_id, organisation_id)`; the key itself is shown once and
    only its hash is stored.
    """
    async with conn.transaction():
        if new_organisation is not None:
            organisation_id = await create_organisation(conn, new_organisation)
        elif organisation_id is None or not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM organisations WHERE id = $1)", organisation_id
        ):
            msg = f"no organisation {organisation_id!r}"
            raise LookupError(msg)
        key = new_key()
        key_id = await store_key(conn, organisation_id, key, name)
    return key, key_id, organisation_id


async def list_keys(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every key's id, organisation, name and dates (never the key: it is not stored)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT k.id, k.organisation_id, o.name AS organisation, k.name, k.created_at,"
        " k.revoked_at FROM api_keys k JOIN organisations o ON o.id = k.organisation_id"
        " ORDER BY k.created_at, k.id"
    )
    return rows


async def revoke_key(conn: asyncpg.Connection | asyncpg.Pool, key_id: str) -> bool:
    """Revoke a key by id; False when there is no such key still valid.

    Every server refuses it within KEY_CACHE_S (see KeyLookup).
    """
    revoked = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id",
        key_id,
    )
    return revoked is not None
