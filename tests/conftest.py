"""Real PostgreSQL for every test: a migrated template database, one fresh copy per test.

Where the server comes from: `TEST_DATABASE_URL` if set; else the PostgreSQL
at 127.0.0.1:5432 if it answers; else an embedded PostgreSQL (pgserver) started
for this session.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from events.store import EventStore
from service import db
from tests.helpers import API_KEY, OTHER_API_KEY, ApiClient

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """A superuser DSN to the maintenance database of the test server."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if asyncio.run(_answers(LOCAL_URL)):
        yield LOCAL_URL
        return
    import pgserver

    folder = Path(tempfile.mkdtemp(prefix="testrun-pg-"))
    server = pgserver.get_server(folder, cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def template_name(admin_url: str) -> Iterator[str]:
    """A migrated database used as the template of every test's database."""
    name = f"testrun_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await db.migrate(_with_database(admin_url, name))

    asyncio.run(create())
    yield name
    asyncio.run(_drop(admin_url, name))


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(admin_url: str, template_name: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = f"testrun_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    finally:
        await conn.close()
    yield _with_database(admin_url, name)
    await _drop(admin_url, name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's database, set up like the service's."""
    pool = await db.create_pool(database_url, min_size=1, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    """The event store on the test's database."""
    return EventStore(pool)


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[ApiClient]:
    """A client of a live app, as organisation A (OTHER_API_KEY is organisation B)."""
    from aiohttp.test_utils import TestClient, TestServer

    from service.config import Config
    from service.http.app import create_app
    from service.ops import keys

    await keys.bootstrap(pool, API_KEY)
    async with pool.acquire() as conn:
        other = await keys.create_organisation(conn, "other")
        await keys.store_key(conn, other, OTHER_API_KEY, "other")
    server = TestServer(create_app(pool, Config()))
    async with TestClient(server) as http:
        yield ApiClient(http)


@pytest.fixture
async def aiohttp_server_factory() -> AsyncIterator[Any]:
    """Real local HTTP servers on 127.0.0.1: yields `start(path, handler) -> base url`."""
    from aiohttp import web

    runners: list[web.AppRunner] = []

    async def start(path: str, handler: Any) -> str:
        app = web.Application()
        app.router.add_route("*", path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def isolated_upcasters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test may register or remove upcasters; the real registry comes back afterwards."""
    from events import codec

    monkeypatch.setattr(codec, "_UPCASTERS", dict(codec._UPCASTERS))
