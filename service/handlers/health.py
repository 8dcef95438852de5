"""`/healthz` (the process is up) and `/readyz` (the database answers, migrations applied)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from events import migrations
from service.db import all_migrations
from service.errors import json_response
from service.handlers.common import POOL


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers and every migration is applied."""
    try:
        async with request.app[POOL].acquire(timeout=2) as conn:
            missing = await migrations.pending(conn, all_migrations())
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return json_response({"status": "unavailable", "database": str(error)}, status=503)
    if missing:
        names = [f"{m.component}/{m.name}" for m in missing]
        return json_response({"status": "unavailable", "pending_migrations": names}, status=503)
    return json_response({"status": "ok"})
