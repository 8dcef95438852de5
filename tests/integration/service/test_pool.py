"""The service pool: callers waiting for a connection are served in order, within a bound."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.db import create_pool


async def test_a_caller_arriving_at_a_release_does_not_jump_the_line(database_url: str) -> None:
    """First come, first served: whoever waits longest gets the next free connection.

    Each holder has a newcomer arrive while it gives its connection back; with
    asyncpg's own queue that newcomer takes the connection from the caller woken
    for it, which goes to the back of the line, again and again.
    """
    pool = await create_pool(database_url, min_size=1, max_size=1)
    served: list[str] = []
    newcomers: list[asyncio.Task[None]] = []

    async def caller(name: str, spawn: bool) -> None:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            served.append(name)
            if spawn:
                # Arrives while the connection is being given back (one loop turn
                # later, as a new request would): exactly when it could barge in.
                asyncio.get_running_loop().call_soon(
                    lambda: newcomers.append(asyncio.create_task(caller(f"new-{name}", False)))
                )

    try:
        first = await pool.acquire()
        waiting = [asyncio.create_task(caller(f"w{n}", spawn=True)) for n in range(5)]
        await asyncio.sleep(0.05)  # all five are in line
        await pool.release(first)
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
        await asyncio.wait_for(asyncio.gather(*newcomers), timeout=10)
    finally:
        await pool.close()
    assert served[:5] == ["w0", "w1", "w2", "w3", "w4"]
    assert sorted(served[5:]) == [f"new-w{n}" for n in range(5)]


async def test_waiting_for_a_connection_ends_at_the_timeout_and_gives_the_turn_back(
    database_url: str,
) -> None:
    """A caller that times out in line leaves it; the next one still gets served."""
    pool = await create_pool(database_url, min_size=1, max_size=1, acquire_timeout_s=0.2)
    try:
        held = await pool.acquire()
        with pytest.raises(TimeoutError):
            await pool.fetchval("SELECT 1")
        await pool.release(held)
        await pool.release(held)  # a second release is a no-op, not a second turn
        assert 1 == await pool.fetchval("SELECT 1")
        async with pool.acquire():
            with pytest.raises(TimeoutError):
                await pool.fetchval("SELECT 1")  # still one connection, one turn
    finally:
        await pool.close()


async def test_a_connection_that_dies_while_held_gives_its_turn_back(database_url: str) -> None:
    """A held connection killed under its holder (PostgreSQL restarting, a backend
    terminated) is back in asyncpg's queue before the holder releases it; the
    holder's release still returns its turn, so the pool keeps all its connections.
    """
    pool = await create_pool(database_url, min_size=1, max_size=2, acquire_timeout_s=2)
    killer = await create_pool(database_url, min_size=1, max_size=1)
    try:
        for _ in range(3):  # more deaths than the pool has connections
            async with pool.acquire() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
                await _until_detached(conn)
        both = [await pool.acquire(), await pool.acquire()]
        assert [1, 1] == [await conn.fetchval("SELECT 1") for conn in both]
        for conn in both:
            await pool.release(conn)
    finally:
        await killer.close()
        await pool.close()


async def _until_detached(conn: asyncpg.Connection, within_s: float = 5) -> None:
    """Wait until asyncpg has noticed the connection's death and taken it back."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            conn.is_closed()
        except asyncpg.InterfaceError:  # "released back to the pool"
            return
        await asyncio.sleep(0.01)
    msg = "asyncpg did not notice the terminated connection"
    raise AssertionError(msg)
