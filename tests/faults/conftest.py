"""The fault suite's stacks: the proxy suite's (the fake upstream and the embed under real uvicorn),
and the same with a breakable TCP relay (``tcp_cut``) between the embed and its upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx2
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.faults.tcp_cut import TcpCut, tcp_cut
from tests.proxy.conftest import APP_NAME, MOUNT, Proxied, Recorder, lite, proxy
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve_in_loop

__all__ = ["lite", "proxy", "proxy_through_relay"]


@asynccontextmanager
async def proxy_through_relay(
    keys: AppKeys, database_url: str, *, idle_close: float | None = None, **options: Any
) -> AsyncIterator[tuple[Proxied, TcpCut]]:
    """The embed served under uvicorn, reaching the fake upstream through a relay the test can break."""
    fake = FakeOpenRouter()
    recorder = Recorder(fake)
    async with serve_in_loop(recorder, lifespan="off") as fake_url:
        port = urlsplit(fake_url).port
        assert port is not None
        async with tcp_cut(port, idle_close=idle_close) as relay:
            wf = Wattfare(
                secret_key=keys.secret_key,
                publishable_key=keys.publishable_key,
                database_url=database_url,
                upstream_url=f"http://127.0.0.1:{relay.port}/api/v1",
                app_name=APP_NAME,
                **options,
            )
            try:
                async with (
                    serve_in_loop(Starlette(routes=[Mount(MOUNT, app=wf)])) as base_url,
                    httpx2.AsyncClient(base_url=base_url + MOUNT, timeout=30) as http,
                ):
                    yield Proxied(fake, recorder, fake_url, wf, base_url, http), relay
            finally:
                await wf.shutdown()
