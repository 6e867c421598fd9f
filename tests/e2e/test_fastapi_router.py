"""FastAPI: ``app.include_router(wattfare_router(wf), prefix=...)``, its lifespan, dependencies and errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from fastapi import APIRouter, FastAPI, Request

from wattfare_embed import BudgetExceededError, RateLimitedError, Wattfare
from wattfare_embed.contrib.fastapi import CurrentWattfareUser, WattfareDep, install_wattfare, wattfare_router
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

LOGIN = "app_user"


def is_started(wf: Wattfare) -> bool:
    try:
        _ = wf.http
    except RuntimeError:
        return False
    return True


def login_cookie(request: Any) -> str | None:
    return request.cookies.get(LOGIN) or None


def host(wf: Wattfare, prefix: str = MOUNT) -> FastAPI:
    """An integrator's FastAPI app: the router, the error handler and a few routes of its own."""
    app = FastAPI(title="Host")
    app.include_router(wattfare_router(wf), prefix=prefix)
    install_wattfare(app)

    @app.get("/embed")
    async def embed(request: Request, wattfare: WattfareDep) -> dict[str, Any]:
        return {
            "sameAsState": request.state.wattfare is wattfare,
            "isOurs": wattfare is wf,
            "appId": wattfare.keys.app_id,
        }

    @app.get("/me/budget")
    async def my_budget(ai: CurrentWattfareUser) -> dict[str, Any]:
        return (await ai.status()).to_json()

    @app.post("/over-budget")
    async def over_budget() -> None:
        raise BudgetExceededError("your monthly cap is reached")

    @app.post("/slow-down")
    async def slow_down() -> None:
        raise RateLimitedError("too many requests", headers={"Retry-After": "7"})

    return app


@asynccontextmanager
async def served(app: FastAPI, **client: Any) -> AsyncIterator[tuple[str, httpx2.AsyncClient]]:
    async with serve_in_loop(app) as base_url, httpx2.AsyncClient(base_url=base_url, timeout=20, **client) as http:
        yield base_url, http


async def test_router_routes_are_in_the_host_openapi_document(new_embed: EmbedFactory) -> None:
    async with served(host(new_embed(login_cookie))) as (_, http):
        document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/wattfare/api/v1/chat/completions"]) == {"post"}
    assert set(paths["/wattfare/api/v1/embeddings"]) == {"post"}
    assert set(paths["/wattfare/api/v1/models"]) == {"get"}
    assert set(paths["/wattfare/api/v1/connections"]) == {"get", "post", "delete"}
    assert set(paths["/wattfare/session"]) == {"post"}
    assert set(paths["/wattfare/api/v1/sessions"]) == {"post"}
    assert set(paths["/wattfare/api/v1/consent"]) == {"post"}
    assert set(paths["/wattfare/connect"]) == {"get"}
    assert "/wattfare/dev/consent" not in paths and "/wattfare/callback" not in paths  # browser pages
    chat = paths["/wattfare/api/v1/chat/completions"]["post"]
    assert chat["tags"] == ["wattfare"] and "metered" in chat["summary"]
    assert {"/embed", "/me/budget"} <= set(paths), "the host's own routes are still there"
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids)), "operation ids are unique"


async def test_router_lifespan_starts_the_embed_and_puts_it_on_request_state(new_embed: EmbedFactory) -> None:
    wf = new_embed(login_cookie)
    app = host(wf)
    with pytest.raises(RuntimeError, match="not started"):
        _ = wf.http
    async with served(app) as (_, http):
        # Started by the merged lifespan before any request reached it.
        assert wf.http is not None
        response = await http.get("/embed")
        assert response.status_code == 200
        assert response.json() == {"sameAsState": True, "isOurs": True, "appId": wf.keys.app_id}
    with pytest.raises(RuntimeError, match="not started"):
        _ = wf.http  # and stopped with the host


async def test_current_user_dependency_answers_401_auth_json_when_nobody_is_signed_in(
    new_embed: EmbedFactory, user_id: str
) -> None:
    async with served(host(new_embed(login_cookie))) as (base_url, http):
        nobody = await http.get("/me/budget")
        assert error_of(nobody) == (401, "auth")
        async with httpx2.AsyncClient(base_url=base_url, cookies={LOGIN: user_id}) as signed_in:
            someone = await signed_in.get("/me/budget")
    assert someone.status_code == 200
    assert someone.json()["appUserId"] == user_id
    assert (someone.json()["connected"], someone.json()["status"]) == (False, "not_connected")


async def test_wattfare_errors_raised_in_host_routes_answer_typed_json(new_embed: EmbedFactory) -> None:
    async with served(host(new_embed(login_cookie))) as (_, http):
        over = await http.post("/over-budget")
        slow = await http.post("/slow-down")
    assert error_of(over) == (402, "budget_exceeded")
    assert over.json()["error"]["message"] == "your monthly cap is reached"
    assert over.headers["x-should-retry"] == "false"
    assert error_of(slow) == (429, "rate_limited")
    assert slow.headers["retry-after"] == "7"
    assert slow.headers["x-should-retry"] == "true"


async def test_embed_errors_through_the_router_are_typed_json(new_embed: EmbedFactory) -> None:
    async with served(host(new_embed(login_cookie))) as (_, http):
        no_token = await http.get(f"{MOUNT}/api/v1/connections")
        bad_json = await http.post(
            f"{MOUNT}/api/v1/sessions", content=b"{", headers={"content-type": "application/json"}
        )
    assert error_of(no_token) == (401, "auth")
    assert error_of(bad_json)[0] == 401  # the secret key is checked before the body


@pytest.mark.parametrize("prefix", [MOUNT, "/billing/ai"])
async def test_connect_redirect_and_callback_keep_the_router_prefix(
    new_embed: EmbedFactory, user_id: str, prefix: str
) -> None:
    wf = new_embed(login_cookie)
    async with served(host(wf, prefix), cookies={LOGIN: user_id}) as (base_url, http):
        start = await http.get(f"{prefix}/connect", params={"monthlyUsd": "4", "returnTo": "/settings?tab=ai"})
        assert start.status_code == 302, start.text
        consent = httpx2.URL(start.headers["location"])
        assert str(consent).startswith(f"{base_url}{prefix}/dev/consent?state="), consent
        cookie = start.headers["set-cookie"]
        assert f"Path={prefix}" in cookie and "HttpOnly" in cookie

        approved = await http.get(str(consent))
        assert approved.status_code == 303
        callback = httpx2.URL(approved.headers["location"])
        assert str(callback).startswith(f"{base_url}{prefix}/callback?"), callback

        back = await http.get(str(callback))
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/settings?tab=ai&wattfare=connected"
        budget = (await http.get("/me/budget")).json()
    assert (budget["connected"], budget["monthlyUsd"]) == (True, 4)


async def test_popup_consent_through_the_router_connects_the_user(new_embed: EmbedFactory, user_id: str) -> None:
    wf = new_embed(login_cookie)
    async with served(host(wf)) as (_, http):
        token = await server_session(http, wf, user_id)
        result = await connect_with_dev_consent(http, token, monthly_usd="2.5")
        connection = await http.get(f"{MOUNT}/api/v1/connections", headers=bearer(token))
    assert result["status"]["monthlyUsd"] == 2.5
    assert connection.json()["connected"] is True


async def test_proxy_route_streams_through_the_router(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    upstream.fake.chunk_delay = 0.05
    wf = new_embed(login_cookie)
    async with served(host(wf)) as (_, http):
        await connect_with_dev_consent(http, await server_session(http, wf, user_id))
        arrivals: list[float] = []
        raw = ""
        sent = time.monotonic()
        async with http.stream(
            "POST",
            f"{MOUNT}/api/v1/chat/completions",
            json={"model": MINI, "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers={**bearer(wf.keys.secret_key), "x-wattfare-user": user_id},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for chunk in response.aiter_text():
                arrivals.append(time.monotonic() - sent)
                raw += chunk
        record, _ = await settled(wf, user_id, 1)
    events = sse_payloads(raw)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert text == REPLY
    assert events[-1]["usage"]["cost"] > 0
    assert raw.rstrip().endswith("data: [DONE]")
    assert len(arrivals) > 3
    assert arrivals[-1] - arrivals[0] > 0.3, "chunks arrive spread out, not in one buffered blob"
    assert arrivals[0] < arrivals[-1] / 2
    assert record.spent > 0 and record.reserved == 0


async def test_redirects_keep_the_proxy_root_path_and_the_prefix(new_embed: EmbedFactory, user_id: str) -> None:
    wf = new_embed(login_cookie)
    async with served(behind_proxy(host(wf), "/api"), cookies={LOGIN: user_id}) as (base_url, http):
        start = await http.get("/api/wattfare/connect", params={"returnTo": "/settings"})
        assert start.status_code == 302, start.text
        assert start.headers["location"].startswith(f"{base_url}/api/wattfare/dev/consent?"), start.headers
        assert "Path=/api/wattfare" in start.headers["set-cookie"]
        approved = await http.get(start.headers["location"])
        assert approved.headers["location"].startswith(f"{base_url}/api/wattfare/callback?"), approved.headers
        back = await http.get(approved.headers["location"])
        assert (back.status_code, back.headers["location"]) == (303, "/settings?wattfare=connected")
        assert (await http.get("/api/me/budget")).json()["connected"] is True


async def test_router_lifespan_merges_with_the_host_lifespan(new_embed: EmbedFactory) -> None:
    wf = new_embed(login_cookie)
    events: list[str] = []

    @asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append(f"host start, embed started: {is_started(wf)}")
        yield {"db": "host-db"}
        events.append(f"host stop, embed started: {is_started(wf)}")

    app = FastAPI(lifespan=own_lifespan)
    app.include_router(wattfare_router(wf), prefix=MOUNT)

    @app.get("/state")
    async def state(request: Request, wattfare: WattfareDep) -> dict[str, Any]:
        return {"db": request.state.db, "isOurs": wattfare is wf}

    async with served(app) as (_, http):
        assert (await http.get("/state")).json() == {"db": "host-db", "isOurs": True}
        assert is_started(wf)
    assert events == ["host start, embed started: False", "host stop, embed started: False"]
    assert not is_started(wf)


async def test_router_included_through_a_nested_router_still_starts_the_embed(
    new_embed: EmbedFactory, user_id: str
) -> None:
    wf = new_embed(login_cookie)
    api = APIRouter(prefix="/v2")
    api.include_router(wattfare_router(wf), prefix=MOUNT)
    app = FastAPI()
    app.include_router(api)
    async with served(app) as (_, http):
        assert is_started(wf)
        status = await http.get(
            f"/v2{MOUNT}/api/v1/status", params={"appUserId": user_id}, headers=bearer(wf.keys.secret_key)
        )
        assert status.status_code == 200 and status.json()["status"] == "not_connected"
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert f"/v2{MOUNT}/api/v1/chat/completions" in paths
