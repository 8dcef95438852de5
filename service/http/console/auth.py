"""Signing in with an API key, and out again."""

from __future__ import annotations

import structlog
from aiohttp import web

from service.http.console import render, sessions
from service.http.console.guard import forbidden, form, same_origin
from service.http.console.sessions import Session
from service.http.handlers.common import POOL
from service.http.middleware import KEYS

log = structlog.get_logger("service.console")

HOME = "/console/runs"


def _safe_next(raw: str | None) -> str:
    """Where to go after signing in: only a console path of ours, never another site."""
    if raw and raw.startswith("/console/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return HOME


async def root(request: web.Request) -> web.StreamResponse:
    """`/`: the console's home."""
    return render.redirect(HOME)


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form (the key goes in the body of a POST, never in a URL)."""
    if await sessions.find_session(request.app[POOL], request) is not None:
        return render.redirect(_safe_next(request.query.get("next")))
    return render.page(
        "sign_in.html", session=None, next=_safe_next(request.query.get("next")), problem=None
    )


async def sign_in(request: web.Request) -> web.StreamResponse:
    """Open a session for a valid key; the cookie holds a random token, never the key."""
    if not same_origin(request):
        log.warning("console_cross_origin_refused", path=request.path)
        return forbidden(None, "This form was sent from another site.")
    posted = await request.post()
    key = posted.get("api_key")
    target = _safe_next(str(posted.get("next") or ""))
    principal = None
    if isinstance(key, str) and key.strip():
        principal = await request.app[KEYS].resolve(key.strip())
    if principal is None:
        log.info("console_sign_in_refused")
        return render.page(
            "sign_in.html",
            session=None,
            status=401,
            next=target,
            problem="That API key is not valid (or has been revoked).",
        )
    token = await sessions.open_session(request.app[POOL], principal)
    log.info(
        "console_signed_in",
        organisation_id=principal.organisation_id,
        api_key_id=principal.api_key_id,
    )
    response = render.redirect(target)
    sessions.set_cookie(response, request, token)
    return response


async def _sign_out(request: web.Request, session: Session) -> web.StreamResponse:
    await sessions.close_session(request.app[POOL], request)
    log.info("console_signed_out", organisation_id=session.organisation_id)
    response = render.redirect("/console/sign-in")
    sessions.clear_cookie(response, request)
    return response


async def not_found(request: web.Request) -> web.StreamResponse:
    """Any other console path: a 404 page (the API's unknown paths stay JSON)."""
    session = await sessions.find_session(request.app[POOL], request)
    return render.error_page(404, "Not found", "There is no such page.", session)


sign_out = form(_sign_out)
