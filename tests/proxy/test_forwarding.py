"""What the upstream receives: the user's funding key, app attribution, a hashed user id; and the model list."""

from __future__ import annotations

from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from wattfare_embed.consent.dev import SIMULATED_KEY_PREFIX
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import APP_NAME, CHAT, MINI, MOUNT, Proxied, running_proxy


async def test_upstream_gets_the_users_funding_key_and_the_apps_attribution(
    keys: Any, sqlite_url: str, user_id: str
) -> None:
    async with running_proxy(keys, sqlite_url, public_url="https://chat.acme.example/") as proxy:
        funding = await proxy.connect(user_id)

        response = await proxy.chat(user_id, stream=True)

        assert response.status_code == 200
        [call] = proxy.upstream_calls()
        assert call.headers["authorization"] == f"Bearer {funding.secret}"
        assert keys.secret_key not in str(call.headers) and keys.secret_key not in call.body.decode()
        assert call.headers["x-openrouter-title"] == APP_NAME
        assert call.headers["http-referer"] == "https://chat.acme.example"
        assert call.json["model"] == MINI and call.json["stream"] is True
        assert call.json["stream_options"] == {"include_usage": True}
        # The upstream saw the referer too, and charged the right key.
        assert (
            proxy.generation(response.text.split('"id":"')[1].split('"')[0]).http_referer == "https://chat.acme.example"
        )


async def test_no_referer_is_sent_without_a_public_url(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    await lite.chat(user_id)

    [call] = lite.upstream_calls()
    assert "http-referer" not in call.headers
    assert call.headers["x-openrouter-title"] == APP_NAME


async def test_upstream_user_is_a_stable_hash_never_the_raw_id(lite: Proxied, user_id: str) -> None:
    other = user_id + "-other"
    await lite.connect(user_id)
    await lite.connect(other)

    await lite.chat(user_id, user="spoofed-by-the-client")
    await lite.chat(user_id)
    await lite.chat(other)

    first, again, someone_else = (call.json["user"] for call in lite.upstream_calls())
    assert first == again
    assert first != someone_else
    for sent, raw in ((first, user_id), (someone_else, other)):
        assert raw not in sent and "spoofed" not in sent
        assert len(sent) >= 16


async def test_a_user_connected_through_the_consent_flow_can_spend(lite: Proxied, user_id: str) -> None:
    session = await lite.wf.create_session(user_id, monthly_usd=3)
    consent = await lite.http.post(
        "/api/v1/consent", json={"monthlyUsd": 3}, headers={"authorization": f"Bearer {session.token}"}
    )
    assert consent.status_code == 200, consent.text
    page = await lite.http.get(consent.json()["url"], follow_redirects=True)
    assert page.status_code == 200
    status = await lite.wf.status(user_id)
    assert (status.connected, status.monthly_cap) == (True, 3_000_000)

    response = await lite.chat(user_id)

    assert response.status_code == 200, response.text
    [call] = lite.upstream_calls()
    assert call.headers["authorization"].startswith(f"Bearer {SIMULATED_KEY_PREFIX}")
    record = await lite.connection(user_id)
    assert record.spent > 0 and record.reserved == 0


async def test_model_list_is_relayed_and_cached(lite: Proxied) -> None:
    first = await lite.http.get("/api/v1/models", headers=lite.headers(None))
    second = await lite.http.get("/api/v1/models", headers=lite.headers(None))

    assert first.status_code == second.status_code == 200
    assert first.content == second.content == lite.recorder.bodies("/api/v1/models")[0]
    assert {model["id"] for model in first.json()["data"]} >= {MINI, "openrouter/auto"}
    assert len(lite.upstream_calls("/api/v1/models")) == 1


async def test_model_list_needs_the_apps_credentials(lite: Proxied) -> None:
    response = await lite.http.get("/api/v1/models")

    assert response.status_code == 401
    assert lite.upstream_calls("/api/v1/models") == []


async def test_a_reconnect_with_a_new_funding_key_is_what_the_next_call_carries(lite: Proxied, user_id: str) -> None:
    first = await lite.connect(user_id)
    await lite.chat(user_id)
    second = await lite.connect(user_id)  # connected again: a new key, sealed anew on the same connection

    response = await lite.chat(user_id)

    assert response.status_code == 200
    assert [call.headers["authorization"] for call in lite.upstream_calls()] == [
        f"Bearer {first.secret}",
        f"Bearer {second.secret}",
    ]


async def test_each_call_of_a_connection_names_the_same_pseudonymous_user(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    await lite.chat(user_id)
    await lite.chat(user_id)

    first, second = (call.json["user"] for call in lite.upstream_calls())
    assert first == second and len(first) == 32 and user_id not in first


async def test_the_upstream_gets_the_clients_text_as_it_was_sent(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    messages = [{"role": "user", "content": 'Grüße, 世界 \u2028 😀 "quoted" \\ back'}]

    response = await lite.chat(user_id, messages=messages, temperature=0.1, top_p=1e-7, seed=2**70)

    assert response.status_code == 200
    [call] = lite.upstream_calls()
    assert call.json["messages"] == messages
    assert (call.json["temperature"], call.json["top_p"], call.json["seed"]) == (0.1, 1e-7, 2**70)


async def test_a_host_app_with_http_middleware_around_the_embed_is_served(lite: Proxied, user_id: str) -> None:
    # Starlette's BaseHTTPMiddleware (FastAPI's @app.middleware("http")) hands the embed a
    # `receive` that enters a task group before it first waits.
    async def passing_through(request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)

    host = Starlette(
        routes=[Mount(MOUNT, app=lite.wf)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=passing_through)]
    )
    await lite.connect(user_id)
    async with serve_in_loop(host) as base_url, httpx2.AsyncClient(base_url=base_url + MOUNT, timeout=30) as http:
        whole = await http.post(CHAT, json=lite.chat_body(), headers=lite.headers(user_id))
        streamed = await http.post(CHAT, json=lite.chat_body(stream=True), headers=lite.headers(user_id))

    assert (whole.status_code, streamed.status_code) == (200, 200)
    assert len(await lite.settled(user_id, 2)) == 2
