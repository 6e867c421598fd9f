"""Litestar: ``WattfarePlugin(wf, path=...)`` registers native handlers, DI, errors and a lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.handlers import ASGIRouteHandler
from litestar.routes import ASGIRoute
from starlette.requests import Request

from wattfare_embed import BudgetExceededError, Wattfare, WattfareUser
from wattfare_embed.contrib.litestar import WattfarePlugin
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import (
    MINI,
    MOUNT,
    REPLY,
    EmbedFactory,
    Upstream,
    bearer,
    behind_proxy,
    connect_with_dev_consent,
    error_of,
    server_session,
    settled,
    sse_payloads,
)

HELLO = [{"role": "user", "content": "hi"}]


def header_login(request: Request) -> str | None:
    return request.headers.get("x-user") or None


@get("/embed")
async def which_embed(wattfare: NamedDependency[Wattfare]) -> dict[str, Any]:
    return {"appId": wattfare.keys.app_id, "name": wattfare.settings.app_name}


@get("/me/budget")
async def my_budget(wattfare_user: NamedDependency[WattfareUser]) -> dict[str, Any]:
    return (await wattfare_user.status()).to_json()


@post("/over-budget")
async def over_budget() -> None:
    raise BudgetExceededError("your monthly cap is reached")


def host(wf: Wattfare, path: str = MOUNT) -> Litestar:
    return Litestar([which_embed, my_budget, over_budget], plugins=[WattfarePlugin(wf, path=path)])


@asynccontextmanager
async def served(app: Litestar, **client: Any) -> AsyncIterator[tuple[str, httpx2.AsyncClient]]:
    async with serve_in_loop(app) as base_url, httpx2.AsyncClient(base_url=base_url, timeout=20, **client) as http:
        yield base_url, http


def test_plugin_registers_native_asgi_handlers_on_exact_paths(new_embed: EmbedFactory) -> None:
    wf = new_embed(header_login)
    app = host(wf)
    ours = [route for route in app.routes if route.path.startswith(MOUNT)]
    assert {route.path for route in ours} == {MOUNT + route.path for route in wf.routes}
    for route in ours:
        assert isinstance(route, ASGIRoute), route
        assert isinstance(route.route_handler, ASGIRouteHandler)
        assert route.route_handler.is_mount is False, "a native handler, not a mounted Starlette app"
    assert not any(route.path == MOUNT for route in app.routes), "nothing is mounted at the prefix itself"


async def test_plugin_lifespan_starts_and_stops_the_embed(new_embed: EmbedFactory) -> None:
    wf = new_embed(header_login)
    app = host(wf)
    with pytest.raises(RuntimeError, match="not started"):
        _ = wf.http
    async with served(app):
        assert wf.http is not None  # started by the plugin's lifespan, before any request
    with pytest.raises(RuntimeError, match="not started"):
        _ = wf.http


async def test_wattfare_and_wattfare_user_dependencies(new_embed: EmbedFactory, user_id: str) -> None:
    wf = new_embed(header_login, app_name="Litestar Host")
    async with served(host(wf)) as (_, http):
        embed = await http.get("/embed")
        nobody = await http.get("/me/budget")
        someone = await http.get("/me/budget", headers={"x-user": user_id})
    assert embed.json() == {"appId": wf.keys.app_id, "name": "Litestar Host"}
    assert error_of(nobody) == (401, "auth")
    assert someone.status_code == 200
    assert (someone.json()["appUserId"], someone.json()["status"]) == (user_id, "not_connected")


async def test_wattfare_error_in_a_host_handler_answers_typed_json(new_embed: EmbedFactory) -> None:
    async with served(host(new_embed(header_login))) as (_, http):
        response = await http.post("/over-budget")
    assert error_of(response) == (402, "budget_exceeded")
    assert response.json()["error"]["message"] == "your monthly cap is reached"
    assert response.headers.get_list("content-type") == ["application/json"]


@pytest.mark.parametrize("path", [MOUNT, "/billing/ai"])
async def test_connect_consent_and_callback_redirects_keep_the_prefix(
    new_embed: EmbedFactory, user_id: str, path: str
) -> None:
    wf = new_embed(header_login)
    async with served(host(wf, path), headers={"x-user": user_id}) as (base_url, http):
        start = await http.get(f"{path}/connect", params={"monthlyUsd": "3", "returnTo": "/settings"})
        assert start.status_code == 302, start.text
        consent = start.headers["location"]
        assert consent.startswith(f"{base_url}{path}/dev/consent?state="), consent
        assert f"Path={path}" in start.headers["set-cookie"]

        approved = await http.get(consent)
        assert approved.status_code == 303, approved.text
        callback = approved.headers["location"]
        assert callback.startswith(f"{base_url}{path}/callback?"), callback

        back = await http.get(callback)
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/settings?wattfare=connected"
        budget = (await http.get("/me/budget")).json()
    assert (budget["connected"], budget["monthlyUsd"]) == (True, 3)


async def test_post_routes_answer_200_not_litestars_201(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    wf = new_embed(header_login)
    async with served(host(wf)) as (_, http):
        token = await server_session(http, wf, user_id)  # asserts 200
        await connect_with_dev_consent(http, token)  # POST consent: asserts 200
        server = {**bearer(wf.keys.secret_key), "x-wattfare-user": user_id}
        reply = await http.post(
            f"{MOUNT}/api/v1/chat/completions", json={"model": MINI, "messages": HELLO}, headers=server
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == REPLY
        models = await http.get(f"{MOUNT}/api/v1/models", headers=server)
        assert models.status_code == 200
        assert any(model["id"] == MINI for model in models.json()["data"])
        record, _ = await settled(wf, user_id, 1)
    assert record.spent > 0


async def test_proxy_route_streams_through_the_plugin(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    upstream.fake.chunk_delay = 0.04
    wf = new_embed(header_login)
    async with served(host(wf)) as (_, http):
        await connect_with_dev_consent(http, await server_session(http, wf, user_id))
        arrivals: list[float] = []
        raw = ""
        async with http.stream(
            "POST",
            f"{MOUNT}/api/v1/chat/completions",
            json={"model": MINI, "messages": HELLO, "stream": True},
            headers={**bearer(wf.keys.secret_key), "x-wattfare-user": user_id},
        ) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_text():
                arrivals.append(time.monotonic())
                raw += chunk
        record, _ = await settled(wf, user_id, 1)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in sse_payloads(raw) if e.get("choices"))
    assert text == REPLY
    assert arrivals[-1] - arrivals[0] > 0.25
    assert record.spent > 0 and record.reserved == 0


async def test_unknown_path_under_the_prefix_is_not_served_by_the_embed(new_embed: EmbedFactory) -> None:
    async with served(host(new_embed(header_login))) as (_, http):
        response = await http.get(f"{MOUNT}/api/v1/nope")
    assert response.status_code == 404


async def test_redirects_keep_the_proxy_root_path_and_the_prefix(new_embed: EmbedFactory, user_id: str) -> None:
    wf = new_embed(header_login)
    app = behind_proxy(host(wf), "/api")
    async with served(app, headers={"x-user": user_id}) as (base_url, http):
        start = await http.get("/api/wattfare/connect", params={"returnTo": "/settings"})
        assert start.status_code == 302, start.text
        assert start.headers["location"].startswith(f"{base_url}/api/wattfare/dev/consent?"), start.headers
        assert "Path=/api/wattfare" in start.headers["set-cookie"]
        approved = await http.get(start.headers["location"])
        assert approved.headers["location"].startswith(f"{base_url}/api/wattfare/callback?"), approved.headers
        back = await http.get(approved.headers["location"])
        assert (back.status_code, back.headers["location"]) == (303, "/settings?wattfare=connected")
        assert (await http.get("/api/me/budget")).json()["connected"] is True
