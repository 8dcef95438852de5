"""Rendering the console's pages: one Jinja2 environment, HTML escaped by default."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from service.http.console.sessions import Session

# Only our own scripts and styles, no frames, nothing inline: an injected tag does nothing.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        # The count bars' widths are style attributes; no <style> element is allowed.
        "style-src-attr 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show one organisation's data: no shared cache keeps them.
    "Cache-Control": "no-store",
}


def _json(value: Any) -> str:
    """Readable JSON: indented, keys sorted, non-ASCII kept."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _time(value: str | datetime | None) -> Markup:
    """A `<time>` element; the console's script shows it in the browser's time zone."""
    if value is None:
        return Markup("<span class=muted>—</span>")
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return Markup('<time datetime="{0}">{0}</time>').format(text)


def _duration(ms: int | None) -> str:
    """`1.2 s`, `340 ms`, `2 min 5 s`; a dash when unknown."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes} min {seconds} s"


def _percent(part: int, whole: int) -> str:
    """A CSS width for a bar segment."""
    return f"{(100 * part / whole) if whole else 0:.3f}%"


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("service.http.console", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(tojson_pretty=_json, time=_time, duration=_duration, percent=_percent)


def page(
    template: str,
    *,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """An HTML page from `template`, with the security headers every page carries."""
    text = ENV.get_template(template).render(session=session, **context)
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(_HEADERS)
    return response


def error_page(status: int, title: str, message: str, session: Session | None) -> web.Response:
    """The page of a refused or failed request (404, 403, 422), never a stack trace."""
    return page("error.html", session=session, status=status, title=title, message=message)


def redirect(location: str) -> web.Response:
    """A 303 to `location` (returned, not raised: the edge turns raised ones into JSON)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
