"""The service pool: callers waiting for a connection are served in order, within a bound."""

from __future__ import annotations

import asyncio

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
