"""A host route that lets the metered openai client raise gets our typed JSON, in every framework."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
from fastapi import FastAPI
from litestar import Litestar, post
from litestar.di import NamedDependency
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from wattfare_embed import WattfareUser
from wattfare_embed.contrib.fastapi import CurrentWattfareUser, install_wattfare, wattfare_router
from wattfare_embed.contrib.litestar import WattfarePlugin
from wattfare_embed.middleware import WattfareMiddleware
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import EmbedFactory, Upstream, error_of

MESSAGES = [{"role": "user", "content": "hello"}]


def _user(request: Request) -> str | None:
    return request.headers.get("x-user") or None


async def _ask(ai: WattfareUser) -> dict[str, Any]:
    reply = await ai.openai().chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    return {"answer": reply.choices[0].message.content}


async def _not_connected_through(app: Any, path: str) -> httpx2.Response:
    async with serve_in_loop(app) as base, httpx2.AsyncClient(base_url=base) as http:
        return await http.post(path, headers={"x-user": "nobody-connected"}, json={})


async def test_starlette_middleware_answers_the_sdk_error_as_not_connected(
    new_embed: EmbedFactory, upstream: Upstream
) -> None:
    wf = new_embed(_user)

    async def ask(request: Request) -> Response:
        return JSONResponse(await _ask(wf.user(_user(request) or "")))

    app = Starlette(routes=[Route("/ask", ask, methods=["POST"]), Mount("/wattfare", app=wf)])
    app.add_middleware(WattfareMiddleware, wattfare=wf)
    response = await _not_connected_through(app, "/ask")
    assert error_of(response) == (402, "not_connected")
    assert response.headers["x-should-retry"] == "false"


async def test_fastapi_install_answers_the_sdk_error_as_not_connected(
    new_embed: EmbedFactory, upstream: Upstream
) -> None:
    wf = new_embed(_user)
    app = FastAPI()
    app.include_router(wattfare_router(wf), prefix="/wattfare")
    install_wattfare(app)

    @app.post("/ask")
    async def ask(ai: CurrentWattfareUser) -> dict[str, Any]:
        return await _ask(ai)

    assert error_of(await _not_connected_through(app, "/ask")) == (402, "not_connected")


async def test_litestar_plugin_answers_the_sdk_error_as_not_connected(
    new_embed: EmbedFactory, upstream: Upstream
) -> None:
    wf = new_embed(_user)

    @post("/ask", status_code=200)
    async def ask(wattfare_user: NamedDependency[WattfareUser]) -> dict[str, Any]:
        return await _ask(wattfare_user)

    app = Litestar([ask], plugins=[WattfarePlugin(wf, path="/wattfare")])
    assert error_of(await _not_connected_through(app, "/ask")) == (402, "not_connected")


async def test_an_openai_error_that_is_not_ours_is_left_to_the_host(new_embed: EmbedFactory) -> None:
    wf = new_embed(_user)

    async def elsewhere(request: Request) -> Response:
        # Another API's error (OpenAI's own code) must not be dressed up as one of ours.
        raise openai.APIError(
            "rate limited elsewhere",
            request=httpx2.Request("GET", "https://example.com"),
            body={"code": "rate_limit_exceeded"},
        )

    app = Starlette(routes=[Route("/ask", elsewhere, methods=["POST"])])
    app.add_middleware(WattfareMiddleware, wattfare=wf)
    response = await _not_connected_through(app, "/ask")
    assert response.status_code == 500
