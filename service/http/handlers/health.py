"""`/healthz` (the process is up) and `/readyz` (the database answers, migrations applied)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from events import migrations
from service.db import all_migrations
from service.http import availability
from service.http.errors import json_response
from service.http.handlers.common import POOL

# /readyz answers within this, ready or not.
READY_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers and every migration is applied."""
    try:
        # However the database fails (down, restarting, too slow), answer within a bound.
        async with asyncio.timeout(READY_TIMEOUT_S):
            async with request.app[POOL].acquire(timeout=READY_TIMEOUT_S) as conn:
                missing = await migrations.pending(conn, all_migrations())
    except Exception as error:
        if not availability.unavailable(error):
            raise
        answer = json_response(
            {"status": "unavailable", "database": f"{type(error).__name__}: {error}"}, status=503
        )
        answer.headers["Retry-After"] = str(availability.RETRY_AFTER_S)
        return answer
    if missing:
        names = [f"{m.component}/{m.name}" for m in missing]
        return json_response({"status": "unavailable", "pending_migrations": names}, status=503)
    return json_response({"status": "ok"})
