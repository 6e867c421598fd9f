"""A process opens at most its pool sizes in PostgreSQL connections, and lets idle ones go.

Counted by the server (``pg_stat_activity``) on a database of the test's own, while statements
that each hold a connection for a while (``pg_sleep``) queue up on both pools.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.core.conftest import make_embed
from tests.core.databases import fresh_postgres
from wattfare_embed import AppKeys, ConfigurationError, PoolSizes, SqlStore
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url


@pytest.mark.parametrize(
    "sizes",
    [{"engine": 0}, {"fast_path": 0}, {"engine_overflow": -1}, {"idle_seconds": 0}],
)
def test_pool_sizes_are_checked(sizes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="PoolSizes"):
        PoolSizes(**sizes)


def test_the_defaults_hold_twelve_connections_at_most() -> None:
    assert PoolSizes().most == 12  # the pools' eleven and the one listening for revocations


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with fresh_postgres("pools") as url:
        yield url


class _Server:
    """How many connections the server has open to one database, sampled while work runs."""

    def __init__(self, admin: Any, database: str) -> None:
        self._admin = admin
        self._database = database
        self.most = 0

    async def count(self) -> int:
        found: int = await self._admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self._database
        )
        return found

    async def sample_until(self, done: asyncio.Future[Any]) -> None:
        while not done.done():
            self.most = max(self.most, await self.count())
            await asyncio.sleep(0.01)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[_Server]:
    admin_url = asyncpg_url(database_url)
    assert admin_url is not None
    admin = await asyncpg.connect(**_connect_kwargs(admin_url.set(database=make_url(database_url).database)))
    try:
        yield _Server(admin, str(make_url(database_url).database))
    finally:
        await admin.close()


async def _busy(store: SqlStore, each: int) -> None:
    """Many statements at once on both pools, each holding its connection for 0.2 s."""
    engine = [
        store._run_handle().run(lambda db: db.execute(text("SELECT pg_sleep(0.2)")).scalar()) for _ in range(each)
    ]
    assert store._postgres is not None
    fast = [store._postgres._pool.fetchval("SELECT pg_sleep(0.2)") for _ in range(each)]
    await asyncio.gather(*engine, *fast)


async def _sampled(server: _Server, store: SqlStore, each: int) -> int:
    server.most = 0
    work = asyncio.ensure_future(_busy(store, each))
    await asyncio.gather(work, server.sample_until(work))
    return server.most - 1  # the sampling connection itself


@pytest.mark.postgres
async def test_a_process_never_opens_more_than_its_pool_sizes_and_closes_idle_ones(
    keys: AppKeys, database_url: str, server: _Server
) -> None:
    sizes = PoolSizes(engine=1, engine_overflow=1, fast_path=2, idle_seconds=0.5)
    async with make_embed(keys, database_url, pool_sizes=sizes) as embed:
        store = embed.store
        assert isinstance(store, SqlStore)
        assert await _sampled(server, store, each=6) == sizes.most
        # Idle: the overflow connection went back and closed at once, the second fast-path one
        # closes after idle_seconds; one engine connection, one fast-path connection and the
        # listening one stay.
        deadline = time.monotonic() + 20
        while await server.count() - 1 > sizes.engine + 2:
            assert time.monotonic() < deadline, "idle connections were never closed"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert await server.count() - 1 == sizes.engine + 2


@pytest.mark.postgres
async def test_the_default_pools_open_at_most_twelve_connections(
    keys: AppKeys, database_url: str, server: _Server
) -> None:
    async with make_embed(keys, database_url) as embed:
        store = embed.store
        assert isinstance(store, SqlStore)
        assert await _sampled(server, store, each=20) == PoolSizes().most
