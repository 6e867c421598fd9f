"""The adversarial suite: the embed, its proxy and the consent domain attacked as an outsider would.

Every attack asserts the safe outcome and that nothing changed: no row written, no money held
or charged, nothing forwarded upstream. Stacks come from the other suites' harnesses, all on
real uvicorn servers; ``database_url`` runs a test on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from tests.core.conftest import Harness, make_embed, running
from tests.hosted.conftest import form
from tests.proxy.conftest import Proxied, running_proxy
from wattfare_embed import AppKeys
from wattfare_embed.consent_domain import ConsentDomain, DomainSettings
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import free_port, serve_in_loop

CHAT = "/api/v1/chat/completions"


class EchoingUpstream(FakeOpenRouter):
    """A fake OpenRouter that, while ``echo_status`` is set, answers chat completions with that
    status and an error message repeating the request's headers, ``Authorization`` included, as
    a careless (or hostile) upstream might."""

    echo_status: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.echo_status is None or scope["type"] != "http" or not scope["path"].endswith(CHAT):
            await super().__call__(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        message = f"echo: Authorization: {headers.get('authorization')}; all headers: {json.dumps(headers)}"
        body = json.dumps({"error": {"code": self.echo_status, "message": message}}).encode()
        response_headers = [(b"content-type", b"application/json")]
        if self.echo_status == 429:
            response_headers.append((b"retry-after", b"3"))
        await send({"type": "http.response.start", "status": self.echo_status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def echoing(keys: AppKeys, sqlite_url: str) -> AsyncIterator[Proxied]:
    async with running_proxy(keys, sqlite_url, fake=EchoingUpstream()) as proxied:
        yield proxied


@pytest.fixture
async def proxied(keys: AppKeys, database_url: str) -> AsyncIterator[Proxied]:
    """The proxy stack on SQLite and on PostgreSQL."""
    async with running_proxy(keys, database_url) as stack:
        yield stack


@pytest.fixture
async def lite_proxy(keys: AppKeys, sqlite_url: str) -> AsyncIterator[Proxied]:
    async with running_proxy(keys, sqlite_url) as stack:
        yield stack


@pytest.fixture
async def site(keys: AppKeys, database_url: str) -> AsyncIterator[Harness]:
    """The embed's own routes (DevConsent, auto-approve) on SQLite and on PostgreSQL."""
    async with running(make_embed(keys, database_url)) as harness:
        yield harness


@pytest.fixture
async def manual_site(keys: AppKeys, sqlite_url: str) -> AsyncIterator[Harness]:
    """The development consent page that waits for Approve (its form is under attack here)."""
    from wattfare_embed import DevConsent

    async with running(make_embed(keys, sqlite_url, consent=DevConsent(auto_approve=False))) as harness:
        yield harness


async def nothing_held_or_charged(stack: Proxied, user: str) -> None:
    """The user's row is as it was: nothing reserved, nothing spent, no ledger row, no upstream call."""
    record = await stack.connection(user)
    assert (record.reserved, record.spent) == (0, 0)
    assert await stack.ledger(user) == []
    assert stack.upstream_calls() == [] and stack.upstream_calls("/api/v1/embeddings") == []


async def raw_http(port: int, request: bytes, *, trickle: bytes = b"", every: float = 0.1) -> tuple[bytes, float]:
    """Send ``request`` (head and any body) on a raw socket, then ``trickle`` one byte every
    ``every`` seconds until the server answers and closes; returns the answer and how long it took.

    A byte still trickling in after the server closed makes it reset the connection; the answer
    read before that is what counts, so a reset ends the reading instead of failing it.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def dribble() -> None:
        for byte in trickle:
            await asyncio.sleep(every)
            writer.write(bytes([byte]))
            await writer.drain()

    answer = bytearray()
    dribbling = asyncio.ensure_future(dribble())
    try:
        writer.write(request)
        await writer.drain()
        deadline = loop.time() + 30
        # Until the server closes the connection, as it must after cutting a body short.
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=deadline - loop.time())
            except ConnectionError:
                break
            if not chunk:
                break
            answer.extend(chunk)
        return bytes(answer), loop.time() - started
    finally:
        dribbling.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await dribbling
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def json_of(answer: bytes) -> Any:
    head, body = answer.split(b"\r\n\r\n", 1)
    if b"transfer-encoding: chunked" in head.lower():
        chunks, rest = [], body
        while rest:
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line, 16)
            chunks.append(rest[:size])
            rest = rest[size + 2 :]
        body = b"".join(chunks)
    return json.loads(body)


# -- the consent domain alone ---------------------------------------------------------------------

PASSWORD = "correct horse battery"


@dataclass
class Domain:
    """The reference consent domain alone on uvicorn, with one built-in user."""

    domain: ConsentDomain
    url: str
    email: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def login_form(self, http: httpx2.AsyncClient) -> dict[str, str]:
        page = await http.get(self.url + "/login")
        assert page.status_code == 200, page.text
        return dict(form(page.text, "/login").fields)

    async def sign_in(
        self, http: httpx2.AsyncClient, password: str = PASSWORD, *, email: str | None = None, client: str | None = None
    ) -> httpx2.Response:
        fields = {**await self.login_form(http), "email": email or self.email, "password": password}
        headers = {"x-forwarded-for": client} if client else {}
        return await http.post(self.url + "/login", data=fields, headers=headers)


@asynccontextmanager
async def serving_domain(
    database_url: str, *, public_url_override: str | None = None, **overrides: Any
) -> AsyncIterator[Domain]:
    """Serve a domain on a local port; ``public_url_override`` is the origin it believes it has."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    public_url = public_url_override or url
    settings = DomainSettings(
        database_url=database_url, public_url=public_url, management_key="sk-or-mgmt-test", **overrides
    )
    domain = ConsentDomain(settings)
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    await domain.add_user(email, PASSWORD)
    try:
        async with serve_in_loop(domain, port=port) as served:
            yield Domain(domain, served, email)
    finally:
        await domain.shutdown()


@pytest.fixture
async def domain_site(sqlite_url: str) -> AsyncIterator[Domain]:
    async with serving_domain(sqlite_url) as served:
        yield served
