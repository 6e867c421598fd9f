"""``GET {mount}/health``: 200 when the embed can meter (store answers, prices loaded), else 503."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.conftest import POSTGRES_URL
from tests.core.databases import fresh_postgres
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import free_port, serve_in_loop


@asynccontextmanager
async def _served(keys: AppKeys, database_url: str, upstream_url: str) -> AsyncIterator[httpx2.AsyncClient]:
    wf = Wattfare(
        secret_key=keys.secret_key,
        publishable_key=keys.publishable_key,
        database_url=database_url,
        upstream_url=upstream_url,
    )
    try:
        async with (
            serve_in_loop(Starlette(routes=[Mount("/wattfare", app=wf)])) as base,
            httpx2.AsyncClient(base_url=base + "/wattfare", timeout=10) as client,
        ):
            yield client
    finally:
        await wf.shutdown()


async def test_health_is_ok_when_the_store_answers_and_the_prices_are_loaded(keys: AppKeys, database_url: str) -> None:
    async with serve_in_loop(FakeOpenRouter()) as fake, _served(keys, database_url, fake + "/api/v1") as client:
        response = await client.get("/health")  # no credentials: a load balancer has none
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        instant = "instant" if database_url.startswith("postgresql") else "polling"
        assert response.json() == {"status": "ok", "store": "ok", "priceBook": "loaded", "revocations": instant}
        # Cheap once loaded: the price book is in memory, the store answers one SELECT 1.
        started = time.monotonic()
        for _ in range(20):
            assert (await client.get("/health")).status_code == 200
        assert time.monotonic() - started < 5


async def test_health_is_503_while_the_model_list_cannot_be_loaded(keys: AppKeys, sqlite_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/api/v1"  # nothing listens there
    async with _served(keys, sqlite_url, nowhere) as client:
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "store": "ok",
            "priceBook": "not loaded",
            "revocations": "polling",
        }


@pytest.mark.postgres
async def test_health_is_503_once_the_database_is_gone(keys: AppKeys) -> None:
    async with (
        fresh_postgres("health") as database_url,
        serve_in_loop(FakeOpenRouter()) as fake,
        _served(keys, database_url, fake + "/api/v1") as client,
    ):
        assert (await client.get("/health")).json()["status"] == "ok"
        admin_url = asyncpg_url(POSTGRES_URL)
        assert admin_url is not None
        admin = await asyncpg.connect(**_connect_kwargs(admin_url))
        try:
            name = database_url.rsplit("/", 1)[1]
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        started = time.monotonic()
        response = await client.get("/health")
        assert time.monotonic() - started < 5  # the check has a deadline of its own
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable" and body["store"] == "unreachable"
        assert name not in response.text  # the reason is logged, never answered
