"""Any ASGI host: ``WattfareMiddleware`` in plain Starlette, ``app.mount("/wattfare", wf)`` and ``async with wf``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from wattfare_embed import BudgetExceededError, NotConnectedError, Wattfare
from wattfare_embed.contrib.fastapi import CurrentWattfareUser
from wattfare_embed.middleware import WattfareMiddleware
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import MOUNT, EmbedFactory, bearer, connect_with_dev_consent, error_of, server_session


def header_login(request: Request) -> str | None:
    return request.headers.get("x-user") or None


def is_started(wf: Wattfare) -> bool:
    try:
        _ = wf.http
    except RuntimeError:
        return False
    return True


# -- WattfareMiddleware -----------------------------------------------------------------------


def middleware_host(wf: Wattfare) -> Starlette:
    async def embed_on_state(request: Request) -> Response:
        embed = request.state.wattfare
        return JSONResponse({"isOurs": embed is wf, "appId": embed.keys.app_id})

    async def over_budget(request: Request) -> Response:
        raise BudgetExceededError("your monthly cap is reached")

    async def not_connected(request: Request) -> Response:
        raise NotConnectedError("connect an AI budget first")

    async def fails_mid_stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await asyncio.sleep(0.01)
            raise BudgetExceededError("cut off after the response started")

        return StreamingResponse(body(), media_type="text/event-stream")

    app = Starlette(
        routes=[
            Route("/embed", embed_on_state),
            Route("/over-budget", over_budget, methods=["POST"]),
            Route("/not-connected", not_connected),
            Route("/fails-mid-stream", fails_mid_stream),
        ]
    )
    app.add_middleware(WattfareMiddleware, wattfare=wf)
    return app


@asynccontextmanager
async def served(app: Any, **client: Any) -> AsyncIterator[tuple[str, httpx2.AsyncClient]]:
    async with serve_in_loop(app) as base_url, httpx2.AsyncClient(base_url=base_url, timeout=20, **client) as http:
        yield base_url, http


async def test_middleware_puts_the_embed_on_request_state(new_embed: EmbedFactory) -> None:
    wf = new_embed(header_login)
    async with served(middleware_host(wf)) as (_, http):
        response = await http.get("/embed")
    assert response.json() == {"isOurs": True, "appId": wf.keys.app_id}


async def test_middleware_answers_budget_exceeded_from_a_host_route_with_402_typed_json(
    new_embed: EmbedFactory,
) -> None:
    async with served(middleware_host(new_embed(header_login))) as (_, http):
        over = await http.post("/over-budget")
        missing = await http.get("/not-connected")
    assert error_of(over) == (402, "budget_exceeded")
    assert over.json() == {"error": {"code": "budget_exceeded", "message": "your monthly cap is reached"}}
    assert over.headers["x-should-retry"] == "false"
    assert error_of(missing) == (402, "not_connected")


async def test_middleware_does_not_swallow_an_error_raised_after_the_response_started(
    new_embed: EmbedFactory,
) -> None:
    async with served(middleware_host(new_embed(header_login))) as (_, http):
        received = b""
        with pytest.raises(httpx2.RemoteProtocolError):
            async with http.stream("GET", "/fails-mid-stream") as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    received += chunk
    # The stream breaks off; no JSON error body is glued onto the half-sent response.
    assert received == b"data: first\n\n"


async def test_middleware_reraises_when_the_response_already_started(new_embed: EmbedFactory) -> None:
    """The same, at the ASGI level: exactly one response start, and the error reaches the server."""
    wf = new_embed(header_login)
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise BudgetExceededError("too late")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(BudgetExceededError, match="too late"):
        await WattfareMiddleware(app, wattfare=wf)(scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start"]
    assert scope["state"]["wattfare"] is wf


async def test_middleware_passes_lifespan_through_to_the_host(new_embed: EmbedFactory) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    app = Starlette(lifespan=lifespan)
    app.add_middleware(WattfareMiddleware, wattfare=new_embed(header_login))
    async with served(app):
        assert events == ["start"]
    assert events == ["start", "stop"]


# -- app.mount("/wattfare", wf): no lifespan wiring ---------------------------------------------


def starlette_mount(wf: Wattfare) -> Starlette:
    return Starlette(routes=[Mount(MOUNT, app=wf)])


def fastapi_mount(wf: Wattfare) -> FastAPI:
    app = FastAPI()
    app.mount(MOUNT, wf)
    return app


@pytest.mark.parametrize("build", [starlette_mount, fastapi_mount], ids=["starlette", "fastapi"])
async def test_mounted_embed_starts_itself_on_the_first_request(
    new_embed: EmbedFactory, user_id: str, build: Any
) -> None:
    wf = new_embed(header_login)
    async with served(build(wf), headers={"x-user": user_id}) as (base_url, http):
        assert not is_started(wf), "mounted apps get no lifespan events"
        # Many first requests at once: the embed starts once and answers them all.
        answers = await asyncio.gather(
            *[http.get(f"{MOUNT}/api/v1/status", params={"appUserId": user_id}, headers=bearer(wf.keys.secret_key))] * 8
        )
        assert [answer.status_code for answer in answers] == [200] * 8
        assert is_started(wf)
        assert answers[0].json()["status"] == "not_connected"

        # The whole consent round trip works under the mount, prefix kept.
        start = await http.get(f"{MOUNT}/connect", params={"monthlyUsd": "2"})
        assert start.status_code == 302
        assert start.headers["location"].startswith(f"{base_url}{MOUNT}/dev/consent?")
        token = await server_session(http, wf, user_id)
        result = await connect_with_dev_consent(http, token, monthly_usd=2)
        assert result["status"]["monthlyUsd"] == 2

        missing = await http.get(f"{MOUNT}/nope")
        assert error_of(missing) == (404, "invalid_request")
    await wf.shutdown()
    assert not is_started(wf)


async def test_async_with_starts_and_stops_the_embed_for_hosts_that_manage_start_up(
    new_embed: EmbedFactory, user_id: str
) -> None:
    wf = new_embed(header_login)
    async with wf as entered:
        assert entered is wf and is_started(wf)
        await asyncio.gather(wf.startup(), wf.startup())  # idempotent: the host and a request may both start it
        assert (await wf.user(user_id).status()).status == "not_connected"
    assert not is_started(wf)
    async with wf:  # and it can start again
        assert is_started(wf)
    assert not is_started(wf)


async def test_host_lifespan_with_async_with_and_a_mount(new_embed: EmbedFactory, user_id: str) -> None:
    wf = new_embed(header_login)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with wf:
            yield

    app = Starlette(routes=[Mount(MOUNT, app=wf)], lifespan=lifespan)
    async with served(app) as (_, http):
        assert is_started(wf), "started by the host's lifespan before any request"
        response = await http.get(
            f"{MOUNT}/api/v1/status", params={"appUserId": user_id}, headers=bearer(wf.keys.secret_key)
        )
        assert response.status_code == 200
    assert not is_started(wf)


async def test_embed_served_as_the_whole_app_answers_lifespan_events(new_embed: EmbedFactory, user_id: str) -> None:
    wf = new_embed(header_login)
    async with served(wf) as (_, http):
        assert is_started(wf)
        response = await http.get("/api/v1/status", params={"appUserId": user_id}, headers=bearer(wf.keys.secret_key))
        assert response.status_code == 200
    assert not is_started(wf)


async def test_fastapi_dependencies_work_with_the_middleware_and_a_plain_mount(
    new_embed: EmbedFactory, user_id: str
) -> None:
    wf = new_embed(header_login)
    app = FastAPI()
    app.mount(MOUNT, wf)
    app.add_middleware(WattfareMiddleware, wattfare=wf)

    @app.get("/me/budget")
    async def my_budget(ai: CurrentWattfareUser) -> dict[str, Any]:
        return (await ai.status()).to_json()

    async with served(app) as (_, http):
        nobody = await http.get("/me/budget")  # AuthError, answered by the middleware (no install_wattfare)
        someone = await http.get("/me/budget", headers={"x-user": user_id})
    assert error_of(nobody) == (401, "auth")
    assert (someone.status_code, someone.json()["appUserId"]) == (200, user_id)
