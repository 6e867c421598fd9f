"""Hosted consent end to end: three real uvicorn servers on three origins.

- the fake OpenRouter (``http://127.0.0.1:P1``), with its management API;
- the reference consent domain (``http://localhost:P2``), on another origin than the app;
- the host app "Acme Chat" (``http://127.0.0.1:P3``) with the embed at ``/wattfare``,
  using ``HostedConsent`` and the key pair the domain printed at registration.

``Browser`` plays the user's browser over HTTP (a cookie jar per host, no redirects
followed, so each hop can be asserted); the Chromium test drives the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from wattfare_embed import AppKeys, HostedConsent, Wattfare
from wattfare_embed.consent_domain import ConsentDomain, DomainSettings
from wattfare_embed.store import ConnectionRecord
from wattfare_embed.testing.fake_openrouter import FakeKey, FakeOpenRouter
from wattfare_embed.testing.live_server import free_port, serve_in_loop

MOUNT = "/wattfare"
APP_NAME = "Acme Chat"
MINI = "openai/gpt-4o-mini"
PASSWORD = "correct horse battery"
T = TypeVar("T")


# -- reading pages ----------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    fields: dict[str, str]


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1].fields[values["name"]] = values.get("value", "")


def forms(page: str) -> list[Form]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def form(page: str, action_ending: str) -> Form:
    found = [f for f in forms(page) if f.action.endswith(action_ending)]
    assert found, f"no form posting to …{action_ending} on the page"
    return found[0]


# -- the user's browser, over HTTP ------------------------------------------------------------


class Browser:
    """One browser: its cookies per host; redirects are followed by hand so each hop is visible."""

    def __init__(self) -> None:
        self.http = httpx2.AsyncClient(timeout=15, follow_redirects=False)

    async def get(self, url: str, **options: Any) -> httpx2.Response:
        return await self.http.get(url, **options)

    async def post_form(self, url: str, fields: dict[str, str]) -> httpx2.Response:
        return await self.http.post(url, data=fields)

    async def follow(self, response: httpx2.Response, *, hops: int = 5) -> httpx2.Response:
        while response.is_redirect and hops > 0:
            location = urljoin(str(response.url), response.headers["location"])
            response = await self.http.get(location)
            hops -= 1
        return response

    async def aclose(self) -> None:
        await self.http.aclose()


# -- the app's webhook gate: take the app "down" for webhooks only ----------------------------


@dataclass
class WebhookGate:
    """Wraps the host app: while ``down``, ``/wattfare/webhooks`` answers 503 and applies nothing."""

    app: Any
    down: bool = False
    status: int = 503  # what a down app answers
    refused: int = 0
    delivered: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == MOUNT + "/webhooks":
            if self.down:
                self.refused += 1
                await Response("down for maintenance", status_code=self.status)(scope, receive, send)
                return
            self.delivered += 1
        await self.app(scope, receive, send)


# -- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    fake: FakeOpenRouter
    fake_url: str
    domain: ConsentDomain
    domain_url: str
    embed: Wattfare
    app_url: str
    keys: AppKeys
    gate: WebhookGate
    email: str
    browsers: list[Browser] = field(default_factory=list)

    @property
    def mount_url(self) -> str:
        return self.app_url + MOUNT

    def browser(self) -> Browser:
        opened = Browser()
        self.browsers.append(opened)
        return opened

    # The app's side -------------------------------------------------------------------------

    async def consent_url(self, browser: Browser, user: str, monthly_usd: str = "10") -> str:
        """What the app's page gets from ``POST {mount}/api/v1/consent`` (and its browser cookie)."""
        session = await self.embed.create_session(user)
        response = await browser.http.post(
            self.mount_url + "/api/v1/consent",
            json={"monthlyUsd": monthly_usd},
            headers={"authorization": f"Bearer {session.token}"},
        )
        assert response.status_code == 200, response.text
        url: str = response.json()["url"]
        return url

    async def chat(self, user: str, **body: Any) -> httpx2.Response:
        payload = {"model": MINI, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20, **body}
        headers = {"authorization": f"Bearer {self.keys.secret_key}", "x-wattfare-user": user}
        async with httpx2.AsyncClient(timeout=15) as http:
            return await http.post(self.mount_url + "/api/v1/chat/completions", json=payload, headers=headers)

    async def connection(self, user: str) -> ConnectionRecord:
        record = await self.embed.store.get_connection(self.keys.app_id, user, int(time.time()))
        assert record is not None, f"{user} has no connection"
        return record

    def funding_key(self, record: ConnectionRecord) -> FakeKey:
        secret = self.embed.open_credential(record)
        assert secret is not None, "the connection holds no credential"
        key = self.fake.keys.find(secret)
        assert key is not None, "the fake does not know the connection's key"
        return key

    # The user's side on the domain ------------------------------------------------------------

    async def sign_in(self, browser: Browser, response: httpx2.Response) -> httpx2.Response:
        """From a redirect to the login page: sign in, and land where it was going."""
        page = await browser.follow(response)
        assert "/login" in str(page.url), page.text
        fields = form(page.text, "/login").fields
        fields.update(email=self.email, password=PASSWORD)
        return await browser.follow(await browser.post_form(self.domain_url + "/login", fields))

    async def consent_page(self, browser: Browser, url: str) -> httpx2.Response:
        response = await browser.get(url)
        if response.is_redirect and "/login" in response.headers["location"]:
            response = await self.sign_in(browser, response)
        assert response.status_code == 200, response.text
        return response

    async def decide(
        self, browser: Browser, page: httpx2.Response, decision: str = "approve", monthly_usd: str | None = None
    ) -> httpx2.Response:
        """Press Approve or Deny on the consent screen; returns the domain's answer (a redirect)."""
        fields = form(page.text, "/authorize").fields
        fields["decision"] = decision
        if monthly_usd is not None:
            fields["monthly_usd"] = monthly_usd
        return await browser.post_form(self.domain_url + "/authorize", fields)

    async def connect(self, user: str, monthly_usd: str = "10", approve_usd: str | None = None) -> ConnectionRecord:
        """The whole round trip in one browser: consent URL, login, screen, approve, callback."""
        browser = self.browser()
        page = await self.consent_page(browser, await self.consent_url(browser, user, monthly_usd))
        redirect = await self.decide(browser, page, monthly_usd=approve_usd)
        assert redirect.status_code == 303, redirect.text
        callback = await browser.follow(redirect)
        assert callback.status_code == 200 and "Connected" in callback.text, callback.text
        return await self.connection(user)

    async def dashboard(self, browser: Browser) -> httpx2.Response:
        response = await browser.get(self.domain_url + "/dashboard")
        if response.is_redirect:
            response = await self.sign_in(browser, response)
        assert response.status_code == 200, response.text
        return response

    async def on_dashboard(self, browser: Browser, grant_id: str, action: str, **fields: str) -> httpx2.Response:
        page = await self.dashboard(browser)
        found = form(page.text, f"/dashboard/grants/{grant_id}/{action}")
        return await browser.post_form(self.domain_url + found.action, {**found.fields, **fields})


def domain_settings(database_url: str, public_url: str, upstream: str, **overrides: Any) -> DomainSettings:
    options: dict[str, Any] = {
        "database_url": database_url,
        "public_url": public_url,
        "upstream_url": upstream + "/api/v1",
        "management_key": "sk-or-mgmt-test",
        "retry_base_seconds": 0.1,
        "retry_max_seconds": 0.4,
        "poll_seconds": 0.2,
        "replaced_notice_delay_seconds": 0.5,
        "max_attempts": 30,
        **overrides,
    }
    return DomainSettings(**options)


def host_app(embed: Wattfare, publishable_key: str) -> Starlette:
    """Acme Chat: a page with the Connect button (for Chromium) and the embed at /wattfare."""

    async def home(request: Request) -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html><head><meta charset="utf-8"><title>{APP_NAME}</title>
<link rel="icon" href="data:,"><script type="module" src="{MOUNT}/wattfare.js"></script></head>
<body><h1>{APP_NAME}</h1>
<wattfare-connect publishable-key="{publishable_key}" session="{MOUNT}/session"></wattfare-connect>
</body></html>"""
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with embed:
            yield

    return Starlette(routes=[Route("/", home), Mount(MOUNT, app=embed)], lifespan=lifespan)


class Servers:
    """Live servers that all stop together (each takes a tick of uvicorn's loop to notice)."""

    def __init__(self) -> None:
        self._running: list[contextlib.AbstractAsyncContextManager[str]] = []

    async def start(self, app: Any, **options: Any) -> str:
        server = serve_in_loop(app, **options)
        url = await server.__aenter__()
        self._running.append(server)
        return url

    async def stop(self) -> None:
        running, self._running = self._running, []
        await asyncio.gather(*(server.__aexit__(None, None, None) for server in running))


@contextlib.asynccontextmanager
async def running_stack(tmp_path: Path, database_url: str | None = None) -> AsyncIterator[Stack]:
    fake = FakeOpenRouter(accept_unknown_keys=False)
    domain_port, app_port = free_port(), free_port()
    domain_url, app_url = f"http://localhost:{domain_port}", f"http://127.0.0.1:{app_port}"
    servers = Servers()
    built: Stack | None = None
    try:
        fake_url = await servers.start(fake, lifespan="off")
        domain_db = database_url or f"sqlite+aiosqlite:///{tmp_path / 'domain.db'}"
        domain = ConsentDomain(domain_settings(domain_db, domain_url, fake_url))
        keys = await domain.register_app(
            name=APP_NAME,
            redirect_uris=[app_url + MOUNT + "/callback"],
            webhook_url=app_url + MOUNT + "/webhooks",
        )
        email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
        await domain.add_user(email, PASSWORD)
        await servers.start(domain, port=domain_port)
        embed = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
            consent=HostedConsent(domain_url),
            resolve_user=lambda request: request.cookies.get("app_user"),
            app_name=APP_NAME,
            upstream_url=fake_url + "/api/v1",
        )
        gate = WebhookGate(host_app(embed, keys.publishable_key))
        await servers.start(gate, port=app_port)
        built = Stack(fake, fake_url, domain, domain_url, embed, app_url, keys, gate, email)
        yield built
    finally:
        if built is not None:
            for browser in built.browsers:
                await browser.aclose()
        await servers.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path) as running:
        yield running


@pytest.fixture
async def any_db_stack(database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack with both the embed and the domain on SQLite, then on PostgreSQL."""
    shared = None if database_url.startswith("sqlite") else database_url
    async with running_stack(tmp_path, shared) as running:
        yield running
