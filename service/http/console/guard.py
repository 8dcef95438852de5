"""Who may see a console page, and which forms it accepts.

Every page needs a live session; its organisation is the only one whose data
the page shows (another organisation's ids are a 404 page, as in the API).
A state-changing form must come from our own origin (Origin, else Referer)
and carry the session's CSRF token; either failing is a 403 page.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web

from events.types import Metadata
from service.http.console import render
from service.http.console.sessions import Session, find_session
from service.http.errors import ApiError, ValidationFailedError
from service.http.handlers.common import POOL
from service.http.middleware import REQUEST_ID

log = structlog.get_logger("service.console")

SESSION = web.RequestKey("console_session", Session)
CSRF_FIELD = "csrf_token"

View = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def own_origin(request: web.Request) -> str:
    """This server's origin as the browser sees it (scheme, host and port)."""
    return f"{request.scheme}://{request.host}"


def same_origin(request: web.Request) -> bool:
    """Did the browser send this request from one of our own pages?

    Browsers send Origin with every POST; Referer is the fallback for the few
    that do not. A request with neither is refused: a form of ours always has one.
    """
    expected = own_origin(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == expected
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" == expected
    return False


def forbidden(session: Session | None, why: str) -> web.Response:
    """The 403 page of a refused form."""
    return render.error_page(403, "Refused", why, session)


def _failure_page(error: Exception, session: Session | None) -> web.Response:
    if isinstance(error, ApiError):
        title = "Not found" if error.status == 404 else "Cannot do that"
        return render.error_page(error.status, title, error.message, session)
    if not isinstance(error, ValidationFailedError):
        raise error
    messages = "; ".join(str(p.get("msg", "")) for p in error.problems)
    return render.error_page(422, "Not accepted", messages, session)


def view(handler: View) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page that needs a session: without one, the sign-in page (then back here)."""

    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = await find_session(request.app[POOL], request)
        if session is None:
            if request.method != "GET":
                return forbidden(None, "Your session has ended: sign in again.")
            target = quote(request.path_qs, safe="/?=&")
            return render.redirect(f"/console/sign-in?next={target}")
        request[SESSION] = session
        structlog.contextvars.bind_contextvars(organisation_id=session.organisation_id)
        try:
            return await handler(request, session)
        except (ApiError, ValidationFailedError) as error:
            return _failure_page(error, session)

    return wrapped


def form(handler: View) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A state-changing form: a session, our own origin, and the session's CSRF token."""

    async def checked(request: web.Request, session: Session) -> web.StreamResponse:
        if not same_origin(request):
            log.warning("console_cross_origin_refused", path=request.path)
            return forbidden(session, "This form was sent from another site.")
        posted = await request.post()
        token = posted.get(CSRF_FIELD)
        if not isinstance(token, str) or not secrets.compare_digest(
            token.encode(), session.csrf_token.encode()
        ):
            log.warning("console_csrf_refused", path=request.path)
            return forbidden(session, "This form is out of date: reload the page and try again.")
        return await handler(request, session)

    return view(checked)


def metadata(request: web.Request, session: Session) -> Metadata:
    """Event metadata for a command from the console: the session's key id, never the key."""
    request_id = request[REQUEST_ID]
    return Metadata(
        request_id=request_id, correlation_id=request_id, actor=session.principal.api_key_id
    )
