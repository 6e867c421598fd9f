"""The fast path's own PostgreSQL connections (``store/_pg_pool.py``), on a real server: bounded,
fair to waiters, and never handing out a connection whose last statement failed or was cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import POSTGRES_URL, require_postgres
from wattfare_embed.store._pg_pool import ConnectionPool
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url

pytestmark = pytest.mark.postgres


def _pool(max_size: int, idle_seconds: float = 60.0) -> ConnectionPool:
    require_postgres()
    url = asyncpg_url(POSTGRES_URL)
    assert url is not None
    options = _connect_kwargs(url)

    async def connect() -> Any:
        return await asyncpg.connect(**options)

    return ConnectionPool(connect, max_size=max_size, idle_seconds=idle_seconds)


@pytest.fixture
async def one() -> AsyncIterator[ConnectionPool]:
    pool = _pool(1)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_connection_whose_statement_was_cancelled_is_never_handed_out_again(one: ConnectionPool) -> None:
    first = await one.fetchval("SELECT pg_backend_pid()")
    assert await one.fetchval("SELECT pg_backend_pid()") == first  # reused while healthy
    slow = asyncio.ensure_future(one.fetchval("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    started = time.monotonic()
    assert await asyncio.wait_for(one.fetchval("SELECT pg_backend_pid()"), 3) != first
    assert time.monotonic() - started < 2  # a fresh connection, not the one still sleeping


async def test_a_connection_whose_statement_failed_is_replaced(one: ConnectionPool) -> None:
    first = await one.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(asyncpg.PostgresError):
        await one.fetchval("SELECT 1/0")
    assert await one.fetchval("SELECT pg_backend_pid()") != first
    assert dict(await one.fetchrow("SELECT $1::int AS n", 7)) == {"n": 7}


async def test_statements_beyond_max_size_wait_their_turn_on_at_most_max_size_connections() -> None:
    pool = _pool(2)
    await pool.open()
    try:
        started = time.monotonic()
        rows = await asyncio.gather(*(pool.fetchrow("SELECT pg_backend_pid() AS pid, pg_sleep(0.2)") for _ in range(6)))
        assert len({row["pid"] for row in rows}) <= 2
        assert time.monotonic() - started >= 0.55  # three rounds of two
    finally:
        await pool.close()


async def test_a_waiter_cancelled_in_line_takes_no_connection_with_it(one: ConnectionPool) -> None:
    busy = asyncio.ensure_future(one.fetchval("SELECT pg_sleep(0.3)"))
    await asyncio.sleep(0.05)
    waiter = asyncio.ensure_future(one.fetchval("SELECT 1"))
    await asyncio.sleep(0.05)
    waiter.cancel()
    await busy
    for _ in range(3):  # the one connection is still there for everyone after
        assert await asyncio.wait_for(one.fetchval("SELECT 2"), 3) == 2


async def test_idle_connections_past_the_one_kept_close_after_idle_seconds() -> None:
    pool = _pool(3, idle_seconds=0.3)
    await pool.open()
    try:
        pids = await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.1)") for _ in range(3)))
        assert len(set(pids)) == 3
        assert len(pool._idle) == 3
        deadline = time.monotonic() + 5
        while len(pool._idle) > 1:
            assert time.monotonic() < deadline, "idle connections were never closed"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert len(pool._idle) == 1
        assert await pool.fetchval("SELECT 3") == 3
    finally:
        await pool.close()
