"""A fake OpenRouter that speaks the real wire format, so tests never call the real one.

    fake = FakeOpenRouter(reply_text="Hello there", chunk_delay=0.01)
    key = fake.keys.create(limit=Decimal("0.50"), limit_reset="monthly")
    fake.inject(status=429, headers={"Retry-After": "7"})   # the next chat completion gets a 429
    # serve `fake` (an ASGI app) with uvicorn, or call it in-process through httpx2.ASGITransport,
    # and point the client at <base>/api/v1.

Run alone (another process can then drive it through `/_fake/*`):

    python -m wattfare_embed.testing.fake_openrouter --port 8090 [--host 127.0.0.1] [--chunk-delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ._fake_account_api import account_routes
from ._fake_billing import FakeBilling
from ._fake_catalog import default_models
from ._fake_control import control_routes
from ._fake_faults import FAULT_SCOPE_KEY, MESSAGES_PATH, Fault, FaultQueue, UsageShape
from ._fake_inference import inference_routes
from ._fake_keys import FakeKey, KeyRing
from ._fake_ledger import Generation, Ledger
from ._fake_oauth import oauth_routes
from ._fake_wire import JSONObject, OpenRouterError

__all__ = ["FakeBilling", "FakeKey", "FakeOpenRouter", "Fault", "Generation", "ReceivedRequest", "main"]


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as the fake received it, for asserting on what a client forwarded."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any

    def to_json(self) -> JSONObject:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
        }


class FakeOpenRouter:
    """An ASGI app serving OpenRouter's `/api/v1` and `/auth`, plus `/_fake/*` controls.

    Every option is also an attribute that tests may change between requests (`management_key`
    is read-only), as are
    `models` (the `/models` catalog, prices as decimal strings), `account_credits` (the account
    balance, None for unlimited), `oauth_key_limit`, `oauth_user_id` and `auto_router_target`
    (the model a variable-priced router such as `openrouter/auto` answers with), and
    `responses_done_marker` (a streamed response ends with `data: [DONE]` after its terminal
    event, as OpenRouter's docs show; `False` ends it there, as OpenAI's stream does).
    """

    def __init__(
        self,
        *,
        management_key: str = "sk-or-mgmt-test",
        accept_unknown_keys: bool = True,
        generation_404_polls: int = 2,
        oauth_auto_approve: bool = True,
        clock: Callable[[], float] = time.time,
        reply_text: str | None = None,
        chunk_delay: float = 0.0,
        usage_shape: UsageShape = "empty_choices",
        account_credits: Decimal | None = None,
        oauth_key_limit: Decimal | None = None,
    ) -> None:
        self.clock = clock
        self.generation_404_polls = generation_404_polls
        self.oauth_auto_approve = oauth_auto_approve
        self.reply_text = reply_text
        self.chunk_delay = chunk_delay
        self.usage_shape: UsageShape = usage_shape
        self.account_credits = account_credits
        self.oauth_key_limit = oauth_key_limit
        self.oauth_user_id = "user_2fakeOpenRouterUser"
        self.auto_router_target = "openai/gpt-4o-mini"
        self.responses_done_marker = True
        self.models: list[JSONObject] = default_models()
        # What media turn out to hold, and how much models generate, once OpenRouter looks.
        self.billing = FakeBilling()
        # Other providers of a model, dearer (or cheaper) than the listed top one: see add_provider.
        self.providers: dict[str, list[tuple[str, JSONObject]]] = {}
        # Route to the dearest eligible provider, as load balancing or fallbacks may (§9 max_price).
        self.route_to_dearest = False
        # Read through a lambda so that a test replacing `fake.clock` moves every timestamp with it.
        self.keys = KeyRing(
            management_key=management_key, accept_unknown_keys=accept_unknown_keys, clock=lambda: self.clock()
        )
        self.ledger = Ledger(lambda: self.clock())
        self.faults = FaultQueue()
        self.requests: list[ReceivedRequest] = []
        self._app = Starlette(
            routes=[
                Route("/api/v1/models", self._list_models, methods=["GET"]),
                *inference_routes(self),
                *account_routes(self),
                *oauth_routes(self),
                *control_routes(self),
            ],
            exception_handlers={OpenRouterError: _answer_openrouter_error, HTTPException: _answer_http_exception},
        )

    @property
    def management_key(self) -> str:
        return self.keys.management.secret

    @property
    def accept_unknown_keys(self) -> bool:
        return self.keys.accept_unknown_keys

    @accept_unknown_keys.setter
    def accept_unknown_keys(self, accept: bool) -> None:
        self.keys.accept_unknown_keys = accept

    def inject(self, fault: Fault | None = None, /, **fields: Any) -> Fault:
        """Queue a fault for the next request(s): pass a `Fault`, or its fields as keywords.

        fake.inject(status=503, headers={"Retry-After": "2"})
        fake.inject(mid_stream_error_after=3, mid_stream_error_code="server_error")
        fake.inject(drop_after=2, count=2)
        fake.inject(no_usage=True, path="/api/v1/chat/completions")
        """
        return self.faults.add(fault if fault is not None else Fault(**fields))

    def add_provider(self, model_id: str, name: str, **pricing: str) -> None:
        """Another provider serving ``model_id`` at these prices (decimal strings, USD per unit);
        prices not named are the listed ones. It is routed to with `route_to_dearest` or
        `:nitro`, unless the request's `provider.max_price` excludes it."""
        self.providers.setdefault(model_id, []).append((name, dict(pricing)))

    def spend_by_key(self) -> dict[str, Decimal]:
        """USD charged so far, by key secret (BYOK: OpenRouter's fee and the provider's bill)."""
        return self.ledger.spend_by_key()

    def total_spend(self) -> Decimal:
        return self.ledger.total_spend()

    def account_remaining(self) -> Decimal | None:
        """`account_credits` minus everything charged; one account pays for every key, OAuth ones too."""
        return None if self.account_credits is None else self.account_credits - self.total_spend()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope)
        if scope["type"] != "http" or path.startswith("/_fake/"):
            await self._app(scope, receive, send)
            return
        body = await _read_body(receive)
        self.requests.append(_received(scope, path, body))
        fault = self.faults.take(path)
        if fault is not None and fault.status is not None:
            await fault.http_error().response(anthropic=path == MESSAGES_PATH)(scope, receive, send)
            return
        await self._app({**scope, FAULT_SCOPE_KEY: fault}, _replay(body, receive), send)

    async def _list_models(self, request: Request) -> Response:
        return JSONResponse({"data": self.models, "total_count": len(self.models), "links": {"next": None}})


async def _answer_openrouter_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenRouterError)
    return exc.response(anthropic=_route_path(request.scope) == MESSAGES_PATH)


async def _answer_http_exception(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods answer in OpenRouter's error shape too.
    assert isinstance(exc, HTTPException)
    return OpenRouterError(exc.status_code, exc.detail, headers=exc.headers).response()


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    return path[len(root_path) :] if root_path and path.startswith(root_path) else path


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the already-read body to the app once, then pass through (a disconnect, eventually)."""
    replayed = False

    async def replaying_receive() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying_receive


def _received(scope: Scope, path: str, body: bytes) -> ReceivedRequest:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return ReceivedRequest(
        method=scope["method"],
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers={name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]},
        body=body,
        json=parsed,
    )


async def _serve(app: FakeOpenRouter, host: str, port: int) -> None:
    # OpenRouter's front keeps an idle connection open far longer than uvicorn's default 5 s; with
    # that default, a caller's pool (the embed's, aiohttp's 15 s) reuses connections it is closing.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", timeout_keep_alive=120)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # start-up failed (port taken, ...): let uvicorn's error surface
            return
        await asyncio.sleep(0.01)
    # Announced only once listening, and with the real port, so `--port 0` works for scripts.
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    print(f"fake OpenRouter on http://{host}:{bound_port}/api/v1", flush=True)
    await serving


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wattfare_embed.testing.fake_openrouter",
        description="Serve a fake OpenRouter for offline tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument("--management-key", default="sk-or-mgmt-test")
    parser.add_argument("--reply-words", type=int, default=0, help="answer with this many one-token words")
    args = parser.parse_args(argv)
    reply = " ".join(f"w{i}" for i in range(args.reply_words)) if args.reply_words else None
    fake = FakeOpenRouter(chunk_delay=args.chunk_delay, management_key=args.management_key, reply_text=reply)
    asyncio.run(_serve(fake, args.host, args.port))


if __name__ == "__main__":
    main()
