"""The console's sessions: opened with an API key, kept as a hash of their token.

The browser holds a random token in an HttpOnly, SameSite=Strict cookie; the
database holds only its SHA-256, so a copy of the table opens no session. A
session ends at sign-out, at its expiry, or when its API key is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import asyncpg
from aiohttp import web

from service.ops.keys import Principal

COOKIE = "console_session"
LIFETIME = timedelta(hours=12)
_LONGEST_TOKEN = 128

_OPEN = """
INSERT INTO console_sessions (token_hash, organisation_id, api_key_id, csrf_token, expires_at)
VALUES ($1, $2, $3, $4, now() + $5::interval)
"""
# Expired sessions go when anyone signs in: the table stays small without a timer.
_FORGET_EXPIRED = "DELETE FROM console_sessions WHERE expires_at <= now()"
_LOOKUP = """
SELECT s.organisation_id, s.api_key_id, s.csrf_token
  FROM console_sessions s JOIN api_keys k ON k.id = s.api_key_id
 WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL
"""
_CLOSE = "DELETE FROM console_sessions WHERE token_hash = $1"


class Session:
    """A signed-in browser: its organisation, the key it signed in with, its CSRF token."""

    __slots__ = ("csrf_token", "principal")

    def __init__(self, principal: Principal, csrf_token: str) -> None:
        self.principal = principal
        self.csrf_token = csrf_token

    @property
    def organisation_id(self) -> str:
        """The organisation whose data the session may see."""
        return self.principal.organisation_id


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def open_session(pool: asyncpg.Pool, principal: Principal) -> str:
    """A new session for `principal`; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_FORGET_EXPIRED)
        await conn.execute(
            _OPEN,
            _digest(token),
            principal.organisation_id,
            principal.api_key_id,
            secrets.token_urlsafe(32),
            LIFETIME,
        )
    return token


async def find_session(pool: asyncpg.Pool, request: web.Request) -> Session | None:
    """The request's live session, or None (no cookie, unknown, expired or key revoked)."""
    token = request.cookies.get(COOKIE, "")
    if not token or len(token) > _LONGEST_TOKEN:
        return None
    row = await pool.fetchrow(_LOOKUP, _digest(token))
    if row is None:
        return None
    return Session(Principal(row["organisation_id"], row["api_key_id"]), row["csrf_token"])


async def close_session(pool: asyncpg.Pool, request: web.Request) -> None:
    """End the request's session, if it has one."""
    token = request.cookies.get(COOKIE, "")
    if token and len(token) <= _LONGEST_TOKEN:
        await pool.execute(_CLOSE, _digest(token))


def set_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    """Give the browser its session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    """Tell the browser to forget its session cookie."""
    response.del_cookie(COOKIE, path="/", secure=request.secure, samesite="Strict")
