"""The proxy under test: the fake OpenRouter and a host app with the embed, both under real uvicorn.

Everything goes through HTTP on loopback, on the test's own event loop, so a test can also
look at the embed's store and the fake's ledger directly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import httpx2
import openai
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.metering.billable import read_chat_request
from wattfare_embed.metering.estimate import prompt_text_tokens
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import ConnectionRecord, LedgerEntry, NewConnection
from wattfare_embed.testing.fake_openrouter import FakeKey, FakeOpenRouter, Generation, ReceivedRequest
from wattfare_embed.testing.live_server import serve_in_loop
from wattfare_embed.testing.waiting import poll

MOUNT = "/wattfare"
APP_NAME = "Acme Chat"
CHAT = "/api/v1/chat/completions"
EMBEDDINGS = "/api/v1/embeddings"
MINI = "openai/gpt-4o-mini"  # 0.15 µ$ a prompt token, 0.6 µ$ a completion token
SONNET = "anthropic/claude-sonnet-4"  # 3 µ$ a prompt token, 15 µ$ a completion token
FINAL_STATES = ("settled", "released", "expired")
HELLO = [{"role": "user", "content": "Say hello"}]

T = TypeVar("T")


@dataclass
class SentBody:
    """What the fake wrote for one request, byte for byte."""

    path: str
    body: bytearray = field(default_factory=bytearray)


class Recorder:
    """Wraps the fake: keeps the exact bytes it sent, so tests can compare what the client got.

    ``first_byte_gate``, when set, holds chat completions' headers until the event is set: an
    upstream still thinking before its first byte.
    """

    def __init__(self, app: FakeOpenRouter) -> None:
        self.app = app
        self.sent: list[SentBody] = []
        self.first_byte_gate: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = SentBody(scope["path"])
        self.sent.append(record)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and self.first_byte_gate is not None and record.path == CHAT:
                await self.first_byte_gate.wait()
            if message["type"] == "http.response.body":
                record.body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, recording_send)

    def bodies(self, path: str = CHAT) -> list[bytes]:
        return [bytes(record.body) for record in self.sent if record.path == path]


@dataclass
class Proxied:
    """A running stack: the fake upstream, the embed mounted in a host app, and an HTTP client."""

    fake: FakeOpenRouter
    recorder: Recorder
    fake_url: str
    wf: Wattfare
    base_url: str  # the host app
    http: httpx2.AsyncClient  # based at the mount
    users: dict[str, FakeKey] = field(default_factory=dict)

    @property
    def keys(self) -> AppKeys:
        return self.wf.keys

    @property
    def url(self) -> str:
        return self.base_url + MOUNT

    def headers(self, user: str | None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.keys.secret_key}"}
        if user is not None:
            headers["x-wattfare-user"] = user
        return headers

    async def connect(self, user: str, monthly_usd: str = "1", *, key: FakeKey | None = None) -> FakeKey:
        """Store a connection funded by a fresh fake key, as a finished consent round trip would."""
        key = key or self.fake.keys.create(name=f"funding for {user}")
        sealed = self.wf.credentials.seal(key.secret, f"{self.keys.app_id}/{user}")
        await self.wf.startup()
        await self.wf.store.save_connection(
            NewConnection(
                app_id=self.keys.app_id,
                app_user_id=user,
                authority="dev",
                monthly_cap=micros_from_usd(monthly_usd),
                sealed_credential=sealed,
            ),
            int(time.time()),
        )
        self.users[user] = key
        return key

    def chat_body(self, **body: Any) -> dict[str, Any]:
        body.setdefault("model", MINI)
        body.setdefault("messages", HELLO)
        return body

    async def chat(self, user: str | None, /, **body: Any) -> httpx2.Response:
        return await self.http.post("/api/v1/chat/completions", json=self.chat_body(**body), headers=self.headers(user))

    @asynccontextmanager
    async def stream(self, user: str | None, /, **body: Any) -> AsyncIterator[httpx2.Response]:
        body.setdefault("stream", True)
        async with self.http.stream(
            "POST", "/api/v1/chat/completions", json=self.chat_body(**body), headers=self.headers(user)
        ) as response:
            yield response

    async def stream_bytes(self, user: str | None, /, **body: Any) -> tuple[httpx2.Response, bytes]:
        async with self.stream(user, **body) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        return response, raw

    def openai(self, user: str, **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url + "/api/v1",
            api_key=self.keys.secret_key,
            default_headers={"X-Wattfare-User": user},
            max_retries=0,
            **options,
        )

    async def connection(self, user: str) -> ConnectionRecord:
        await self.wf.caught_up(user)  # the store read directly: see what this process has answered
        record = await self.wf.store.get_connection(self.keys.app_id, user, int(time.time()))
        assert record is not None, f"{user} has no connection"
        return record

    async def ledger(self, user: str) -> list[LedgerEntry]:
        await self.wf.caught_up(user)
        return list(reversed(await self.wf.store.ledger(self.keys.app_id, user, limit=1000)))

    def upstream_calls(self, path: str = CHAT) -> list[ReceivedRequest]:
        return [request for request in self.fake.requests if request.path == path]

    def generation(self, generation_id: str | None) -> Generation:
        found = [record for record in self.fake.ledger.records if record.id == generation_id]
        assert found, f"the fake has no settled generation {generation_id!r}"
        return found[0]

    def fake_spend(self, user: str) -> Decimal:
        return self.fake.spend_by_key().get(self.users[user].secret, Decimal(0))

    async def settled(self, user: str, requests: int, *, reconciled: bool = False) -> list[LedgerEntry]:
        """Wait (with a deadline) until the user's ledger holds ``requests`` final rows and nothing is held."""

        async def check() -> list[LedgerEntry] | None:
            rows = await self.ledger(user)
            record = await self.connection(user)
            if len(rows) != requests or record.reserved != 0:
                return None
            if any(row.state not in FINAL_STATES for row in rows):
                return None
            if reconciled and any(row.reconcile for row in rows):
                await self.wf.proxy.sweep()
                return None
            return rows

        return await poll(check, what=f"{requests} final ledger rows for {user}")


@asynccontextmanager
async def running_proxy(
    keys: AppKeys, database_url: str, *, fake: FakeOpenRouter | None = None, **options: Any
) -> AsyncIterator[Proxied]:
    """Serve the fake and the host app; at the end, check no reservation leaked and shut the embed down."""
    fake = fake or FakeOpenRouter()
    recorder = Recorder(fake)
    options.setdefault("app_name", APP_NAME)
    servers: list[AbstractAsyncContextManager[str]] = []
    wf: Wattfare | None = None
    try:
        servers.append(serve_in_loop(recorder, lifespan="off"))
        fake_url = await servers[-1].__aenter__()
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=database_url,
            upstream_url=fake_url + "/api/v1",
            **options,
        )
        servers.append(serve_in_loop(Starlette(routes=[Mount(MOUNT, app=wf)])))
        base_url = await servers[-1].__aenter__()
        async with httpx2.AsyncClient(base_url=base_url + MOUNT, timeout=30) as http:
            proxied = Proxied(fake, recorder, fake_url, wf, base_url, http)
            yield proxied
            # No request may leave a reservation behind.
            for user in proxied.users:
                record = await proxied.connection(user)
                assert record.reserved == 0, f"{user} still has {record.reserved} µ$ reserved"
    finally:
        # Both servers stop together (each takes a tick of uvicorn's loop), then the embed.
        await asyncio.gather(*(server.__aexit__(None, None, None) for server in servers))
        if wf is not None:
            await wf.shutdown()


@pytest.fixture
async def proxy(keys: AppKeys, database_url: str) -> AsyncIterator[Proxied]:
    """The default stack, on SQLite and on PostgreSQL."""
    async with running_proxy(keys, database_url) as proxied:
        yield proxied


@pytest.fixture
async def lite(keys: AppKeys, sqlite_url: str) -> AsyncIterator[Proxied]:
    """The default stack on SQLite only, for behaviour that does not depend on the database."""
    async with running_proxy(keys, sqlite_url) as proxied:
        yield proxied


# -- reading what came back -------------------------------------------------------------------


def sse_data(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order (comments and blank lines dropped)."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    return [line[5:].strip().decode() for line in lines if line.startswith(b"data:")]


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The JSON events of an SSE body (``[DONE]`` left out)."""
    return [json.loads(data) for data in sse_data(raw) if data != "[DONE]"]


def error_of(response: httpx2.Response) -> tuple[int, str]:
    """``(status, code)`` of a typed error answer, checking its shape on the way."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return response.status_code, str(body["error"]["code"])


def usd_micros(amount: Decimal) -> int:
    return micros_from_usd(amount)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens the admission counts for a chat body's text."""
    return prompt_text_tokens(read_chat_request({"model": MINI, **body}))
