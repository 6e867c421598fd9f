"""Helpers for the core tests: an embed mounted in a tiny Starlette app, served by real uvicorn."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.consent_flow import BROWSER_COOKIE
from wattfare_embed.store import schema
from wattfare_embed.testing.live_server import serve_in_loop

MOUNT = "/wattfare"
APP_NAME = "Acme Chat"
LOGIN_COOKIE = "app_user"


def user_from_login_cookie(request: Request) -> str | None:
    """The host app's own "login": a cookie naming the signed-in user."""
    return request.cookies.get(LOGIN_COOKIE)


def make_embed(keys: AppKeys, database_url: str, **options: Any) -> Wattfare:
    options.setdefault("resolve_user", user_from_login_cookie)
    options.setdefault("app_name", APP_NAME)
    return Wattfare(
        secret_key=keys.secret_key, publishable_key=keys.publishable_key, database_url=database_url, **options
    )


async def _settings_page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"settings {request.url.query}")


def host_app(embed: Wattfare) -> Starlette:
    """The integrator's app: its own page at /settings, the embed at /wattfare."""
    return Starlette(routes=[Route("/settings", _settings_page), Mount(MOUNT, app=embed)])


def local_client(base_url: str = "", **options: Any) -> httpx2.AsyncClient:
    """A client for the plain-http local test servers.

    ``verify=False`` only skips building a TLS context (about 40 ms per client, with certifi's bundle
    loaded each time); nothing here speaks TLS.
    """
    return httpx2.AsyncClient(base_url=base_url, verify=False, **options)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def error_code(response: httpx2.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["code"])


def refused_link_page(response: httpx2.Response) -> str:
    """The error code of the page a person sees for a used, expired or unknown consent link."""
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert "This link can no longer be used" in response.text
    found = re.search(r'<main data-code="([a-z_]+)">', response.text)
    assert found, response.text
    return found.group(1)


_RESULT = re.compile(r'<script id="wattfare-result" type="application/json">(.*?)</script>', re.S)


def callback_result(response: httpx2.Response) -> dict[str, Any]:
    """What the callback page posts to the opener (and where it would send a tab without one)."""
    assert response.url.path == f"{MOUNT}/callback", response.url
    assert response.headers["content-type"].startswith("text/html")
    match = _RESULT.search(response.text)
    assert match, response.text
    result: dict[str, Any] = json.loads(match.group(1))
    return result


@dataclass
class Harness:
    """A running host app with the embed mounted, and one browser (a client with its own cookies)."""

    embed: Wattfare
    base_url: str
    browser: httpx2.AsyncClient

    @property
    def keys(self) -> AppKeys:
        return self.embed.keys

    @property
    def server_auth(self) -> dict[str, str]:
        return bearer(self.keys.secret_key)

    def new_browser(self, **options: Any) -> httpx2.AsyncClient:
        return local_client(self.base_url + MOUNT, **options)

    async def session(self, user: str, monthly_usd: Any = None) -> str:
        body: dict[str, Any] = {"appUserId": user}
        if monthly_usd is not None:
            body["requestLimit"] = {"monthlyUsd": monthly_usd}
        response = await self.browser.post("/api/v1/sessions", json=body, headers=self.server_auth)
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    async def server_status(self, user: str) -> dict[str, Any]:
        response = await self.browser.get("/api/v1/status", params={"appUserId": user}, headers=self.server_auth)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status

    async def consent_url(self, token: str, browser: httpx2.AsyncClient | None = None, **body: Any) -> str:
        response = await (browser or self.browser).post("/api/v1/consent", json=body, headers=bearer(token))
        assert response.status_code == 200, response.text
        return str(response.json()["url"])

    async def connect(
        self, user: str, monthly_usd: Any = 10, browser: httpx2.AsyncClient | None = None
    ) -> dict[str, Any]:
        """The whole popup round trip with auto-approve; returns the callback page's result."""
        browser = browser or self.browser
        token = await self.session(user)
        body = {} if monthly_usd is None else {"monthlyUsd": monthly_usd}
        url = await self.consent_url(token, browser, **body)
        page = await browser.get(url, follow_redirects=True)
        assert page.status_code == 200, page.text
        return callback_result(page)

    async def count_consent_requests(self) -> int:
        table = schema.consent_requests
        query = select(func.count()).select_from(table).where(table.c.app_id == self.keys.app_id)
        return await run_sql(self.embed, lambda db: db.execute(query).scalar_one())


async def run_sql(embed: Wattfare, operation: Callable[[Any], Any]) -> Any:
    """Run one transaction on the embed's own store (tests only: to look at or age rows)."""
    store: Any = embed.store
    return await store._run_handle().run(operation)


@asynccontextmanager
async def running(embed: Wattfare) -> AsyncIterator[Harness]:
    """Serve the host app with ``embed`` under uvicorn; shut the embed down afterwards."""
    try:
        async with (
            serve_in_loop(host_app(embed)) as base_url,
            local_client(base_url + MOUNT) as browser,
        ):
            yield Harness(embed, base_url, browser)
    finally:
        await embed.shutdown()


@pytest.fixture
async def harness(keys: AppKeys, database_url: str) -> AsyncIterator[Harness]:
    """The default setup (DevConsent with auto-approve) on both databases."""
    async with running(make_embed(keys, database_url)) as running_harness:
        yield running_harness


@pytest.fixture
async def lite(keys: AppKeys, sqlite_url: str) -> AsyncIterator[Harness]:
    """The default setup on SQLite only, for behaviour that does not depend on the database."""
    async with running(make_embed(keys, sqlite_url)) as running_harness:
        yield running_harness


__all__ = [
    "APP_NAME",
    "BROWSER_COOKIE",
    "LOGIN_COOKIE",
    "MOUNT",
    "Harness",
    "bearer",
    "callback_result",
    "error_code",
    "host_app",
    "local_client",
    "make_embed",
    "run_sql",
    "running",
    "user_from_login_cookie",
]
