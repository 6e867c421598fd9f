"""End-to-end helpers: the fake OpenRouter under uvicorn, embeds pointed at it, and the consent round trip.

Every host app here is served by real uvicorn on the test's own event loop (``serve_in_loop``),
so a test drives it over HTTP as a browser would and can still await the embed's store.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.config import ResolveUser
from wattfare_embed.consent_flow import BROWSER_COOKIE
from wattfare_embed.store import ConnectionRecord, LedgerEntry
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve_in_loop
from wattfare_embed.testing.waiting import poll

MOUNT = "/wattfare"
MINI = "openai/gpt-4o-mini"
REPLY = "Hello there from the simulated upstream, one word at a time"
FINAL_STATES = ("settled", "released", "expired")

T = TypeVar("T")


# -- the fake upstream ------------------------------------------------------------------------


@dataclass
class Upstream:
    """The fake OpenRouter, served on loopback."""

    fake: FakeOpenRouter
    base_url: str  # http://127.0.0.1:PORT

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v1"

    def chat_calls(self) -> list[Any]:
        return [request for request in self.fake.requests if request.path == "/api/v1/chat/completions"]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = FakeOpenRouter(reply_text=REPLY)
    async with serve_in_loop(fake, lifespan="off") as base_url:
        yield Upstream(fake, base_url)


# -- embeds -----------------------------------------------------------------------------------


class EmbedFactory(Protocol):
    def __call__(
        self, resolve_user: ResolveUser | None = None, *, database_url: str | None = None, **options: Any
    ) -> Wattfare: ...


# Nothing listens here: tests that never reach a model skip serving the fake (and its shutdown time).
NO_UPSTREAM = "http://127.0.0.1:9/api/v1"


@pytest.fixture
def upstream_url(request: pytest.FixtureRequest) -> str:
    """The fake's URL when the test uses the ``upstream`` fixture, else an address nothing answers."""
    if "upstream" in request.fixturenames:
        upstream: Upstream = request.getfixturevalue("upstream")
        return upstream.api_url
    return NO_UPSTREAM


@pytest.fixture
async def new_embed(keys: AppKeys, sqlite_url: str, upstream_url: str) -> AsyncIterator[EmbedFactory]:
    """Make embeds (pointed at the fake upstream when the test serves it); all are shut down at the end."""
    made: list[Wattfare] = []

    def factory(
        resolve_user: ResolveUser | None = None, *, database_url: str | None = None, **options: Any
    ) -> Wattfare:
        options.setdefault("app_name", "E2E Host")
        embed = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=database_url or sqlite_url,
            upstream_url=upstream_url,
            resolve_user=resolve_user,
            **options,
        )
        made.append(embed)
        return embed

    try:
        yield factory
    finally:
        for embed in made:
            await embed.shutdown()


# -- the consent round trip, as a browser does it ----------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def server_session(http: httpx2.AsyncClient, wf: Wattfare, user: str, *, mount: str = MOUNT) -> str:
    """``POST {mount}/api/v1/sessions`` with the secret key, as the host's server would."""
    response = await http.post(f"{mount}/api/v1/sessions", json={"appUserId": user}, headers=bearer(wf.keys.secret_key))
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


_RESULT = re.compile(r'<script id="wattfare-result" type="application/json">(.*?)</script>', re.S)


async def connect_with_dev_consent(
    browser: httpx2.AsyncClient, token: str, *, monthly_usd: Any = 1, mount: str = MOUNT
) -> dict[str, Any]:
    """Consent URL → development consent (auto-approve) → callback; every hop keeps ``mount``.

    ``browser`` is based at the host app's origin and keeps cookies. Returns the callback
    page's result (what it posts to the opener).
    """
    response = await browser.post(f"{mount}/api/v1/consent", json={"monthlyUsd": monthly_usd}, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert BROWSER_COOKIE in response.cookies, "the consent call binds the browser with a cookie"
    consent_url = httpx2.URL(response.json()["url"])
    assert consent_url.path == f"{mount}/dev/consent", consent_url

    page = await browser.get(str(consent_url))
    assert page.status_code == 303, page.text
    callback_url = httpx2.URL(page.headers["location"])
    assert callback_url.path == f"{mount}/callback", callback_url
    assert callback_url.params.get("code") and callback_url.params.get("state")

    done = await browser.get(str(callback_url))
    assert done.status_code == 200, done.text
    assert done.headers["content-type"].startswith("text/html")
    match = _RESULT.search(done.text)
    assert match, done.text
    result: dict[str, Any] = json.loads(match.group(1))
    assert result["error"] is None, result
    assert result["status"]["connected"] is True, result
    return result


async def server_status(http: httpx2.AsyncClient, wf: Wattfare, user: str, *, mount: str = MOUNT) -> dict[str, Any]:
    """``GET {mount}/api/v1/status`` with the secret key."""
    response = await http.get(f"{mount}/api/v1/status", params={"appUserId": user}, headers=bearer(wf.keys.secret_key))
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


async def lower_cap(http: httpx2.AsyncClient, token: str, monthly_usd: str, *, mount: str = MOUNT) -> dict[str, Any]:
    """Lower the cap through the session-token API; answers at once (no consent needed to lower)."""
    response = await http.post(f"{mount}/api/v1/connections", json={"monthlyUsd": monthly_usd}, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "consentUrl" not in body, body
    return body


async def disconnect(http: httpx2.AsyncClient, token: str, *, mount: str = MOUNT) -> None:
    response = await http.delete(f"{mount}/api/v1/connections", headers=bearer(token))
    assert response.status_code == 204, response.text


# -- the ledger -------------------------------------------------------------------------------


async def connection(wf: Wattfare, user: str) -> ConnectionRecord:
    await wf.caught_up(user)  # the store read directly: see every charge this process has answered
    record = await wf.store.get_connection(wf.keys.app_id, user, int(time.time()))
    assert record is not None, f"{user} has no connection"
    return record


async def ledger(wf: Wattfare, user: str) -> list[LedgerEntry]:
    await wf.caught_up(user)
    return list(reversed(await wf.store.ledger(wf.keys.app_id, user, limit=1000)))


async def settled(wf: Wattfare, user: str, rows: int) -> tuple[ConnectionRecord, list[LedgerEntry]]:
    """Wait until ``user`` has ``rows`` final ledger rows and nothing reserved."""

    async def check() -> tuple[ConnectionRecord, list[LedgerEntry]] | None:
        record, entries = await connection(wf, user), await ledger(wf, user)
        if record.reserved != 0 or len(entries) != rows or any(e.state not in FINAL_STATES for e in entries):
            return None
        return record, entries

    return await poll(check, what=f"{rows} settled ledger rows for {user}")


# -- reading answers --------------------------------------------------------------------------


def error_of(response: httpx2.Response) -> tuple[int, str]:
    """``(status, code)`` of a typed JSON error, checking its shape."""
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return response.status_code, str(body["error"]["code"])


def sse_payloads(raw: str) -> list[Any]:
    """The JSON ``data:`` payloads of an SSE body (``[DONE]`` left out)."""
    lines = raw.replace("\r\n", "\n").split("\n")
    data = [line[5:].strip() for line in lines if line.startswith("data:")]
    return [json.loads(item) for item in data if item != "[DONE]"]


async def connect_user(wf: Wattfare, user: str, monthly_usd: Any = 1) -> dict[str, Any]:
    """Connect ``user`` through the real consent pages of ``wf`` mounted in a throwaway host.

    The host stops afterwards; the embed stays started, so a test can then call it in process only.
    """
    host = Starlette(routes=[Mount(MOUNT, app=wf)])
    async with serve_in_loop(host) as base_url, httpx2.AsyncClient(base_url=base_url, timeout=20) as browser:
        token = await server_session(browser, wf, user)
        result = await connect_with_dev_consent(browser, token, monthly_usd=monthly_usd)
    return result


def behind_proxy(app: Any, prefix: str) -> Any:
    """``app`` as uvicorn ``--root-path {prefix}`` runs it behind a proxy that serves it under ``prefix``.

    Requests arrive at ``{prefix}/…``; the scope carries ``root_path=prefix`` and the full path.
    """

    async def proxied(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "root_path": prefix}
        await app(scope, receive, send)

    return proxied


@asynccontextmanager
async def example_browser(app: Any, user: str) -> AsyncIterator[httpx2.AsyncClient]:
    """An example app under uvicorn and a browser signed in as ``user`` (the examples' header login)."""
    async with (
        serve_in_loop(app) as base_url,
        httpx2.AsyncClient(base_url=base_url, headers={"x-demo-user": user}, timeout=20) as browser,
    ):
        yield browser
