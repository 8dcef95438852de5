"""`Idempotency-Key` on POST: the same key and body within 24 h answers the first response.

The first request with a key claims it (a row with no response yet), runs, and
stores its response. A retry with the same body gets that response back and
creates nothing; with another body it is a 409, and while the first is still
being answered it is a 409 too (retry later). A 5xx is not kept: the key can be
used again. Keys are per organisation and expire after 24 hours. A claim never
answered for a minute (its process died, or the database went away before the
response was stored) is taken over by the next request with that key; in the
rare case where the first request had committed its work before dying, that
work is done a second time.
"""

from __future__ import annotations

import hashlib

import asyncpg
from aiohttp import web

from service.http.errors import ApiError
from service.http.handlers.common import POOL
from service.http.middleware import Handler, principal

HEADER = "Idempotency-Key"
_MAX_KEY_LENGTH = 255

# Claim the key, or take over one that expired, or one whose first request was
# abandoned: claimed long ago (ABANDONED_AFTER) and never answered, because its
# process died or the database went away before the response could be stored.
ABANDONED_AFTER_S = 60
_CLAIM = f"""
INSERT INTO idempotency_keys (organisation_id, key, request_hash)
VALUES ($1, $2, $3)
ON CONFLICT (organisation_id, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, status = NULL, response = NULL, created_at = now()
 WHERE idempotency_keys.created_at < now() - interval '24 hours'
    OR (idempotency_keys.status IS NULL
        AND idempotency_keys.created_at < now() - interval '{ABANDONED_AFTER_S} seconds')
RETURNING key
"""

_EXISTING = """
SELECT request_hash, status, response FROM idempotency_keys
 WHERE organisation_id = $1 AND key = $2
"""

_STORE = """
UPDATE idempotency_keys SET status = $3, response = $4 WHERE organisation_id = $1 AND key = $2
"""

_FORGET = "DELETE FROM idempotency_keys WHERE organisation_id = $1 AND key = $2"


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a repeated POST with the response of the first one."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None or not request.path.startswith("/v1/"):
        return await handler(request)
    if not key or len(key) > _MAX_KEY_LENGTH or "\x00" in key:
        raise ApiError(400, "invalid_idempotency_key", f"{HEADER} must be 1 to 255 characters")
    organisation_id = principal(request).organisation_id
    body = await request.read()
    digest = hashlib.sha256(request.path.encode() + b"\n" + body).digest()
    pool: asyncpg.Pool = request.app[POOL]
    if await pool.fetchval(_CLAIM, organisation_id, key, digest) is None:
        return await _replay(pool, organisation_id, key, digest)
    try:
        response = await handler(request)
    except BaseException:
        await pool.execute(_FORGET, organisation_id, key)
        raise
    if response.status >= 500 or not isinstance(response, web.Response):
        await pool.execute(_FORGET, organisation_id, key)
        return response
    await pool.execute(_STORE, organisation_id, key, response.status, response.body or b"")
    return response


async def _replay(
    pool: asyncpg.Pool, organisation_id: str, key: str, digest: bytes
) -> web.StreamResponse:
    row = await pool.fetchrow(_EXISTING, organisation_id, key)
    if row is not None and row["request_hash"] != digest:
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"{HEADER} {key!r} was already used with another request body",
        )
    if row is None or row["status"] is None:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            f"a request with {HEADER} {key!r} is still being answered; retry later",
        )
    response = web.Response(
        body=bytes(row["response"]), status=row["status"], content_type="application/json"
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response
