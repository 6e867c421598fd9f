"""The wire of a metered call: the request body we accept, and the bytes we add to a response.

Everything else in a response is the upstream's, forwarded as it came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from .._eager import FirstStep
from .._json import parse_json
from ..errors import (
    BudgetExceededError,
    InvalidRequestError,
    NotConnectedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UpstreamError,
    WattfareError,
)

__all__ = [
    "MAX_MODEL_ID_LENGTH",
    "cut_off_error",
    "parse_request",
    "read_body",
    "relayed_headers",
    "request_headers",
    "require_json_body",
    "send_bytes",
    "send_error",
    "upstream_headers",
]

MAX_MODEL_ID_LENGTH = 255  # the ledger's column

# Headers that belong to one hop, or that we change (length, encoding), are not relayed.
_NOT_RELAYED = frozenset(
    {
        "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length",
        "content-encoding", "proxy-authenticate", "proxy-authorization", "set-cookie", "date", "server",
    }
)  # fmt: skip


def request_headers(scope: Scope) -> dict[str, str]:
    """A request's headers by name, decoded once: what Starlette's ``Headers`` answers, where each
    look-up would decode and compare every header again. A repeated header reads as its first."""
    # ASGI names are lower-case bytes; reversed, so the first of a repeated header is the one kept.
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}


def require_json_body(headers: Mapping[str, str]) -> None:
    """Refuse, before reading a byte of it, a body that is not declared as JSON."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidRequestError("send the body as JSON with Content-Type: application/json")


def _model_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f'`{field}` is required, e.g. "openai/gpt-4o-mini"')
    if len(value) > MAX_MODEL_ID_LENGTH or not value.isprintable():
        # Checked here, not left to the database: a model id is stored with the request's ledger row.
        raise InvalidRequestError(f"`{field}` must be a model id of at most {MAX_MODEL_ID_LENGTH} printable characters")
    return value


def parse_request(body: bytes, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The JSON object of a metered request, checked before anything is held: a model, a readable
    ``provider``, and whatever its endpoint's ``check`` asks."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    _model_id(payload.get("model"), "model")
    check(payload)
    provider = payload.get("provider")
    if provider is not None and not (isinstance(provider, dict) and isinstance(provider.get("max_price") or {}, dict)):
        raise InvalidRequestError("`provider` must be an object, and its `max_price` too")
    return payload


def upstream_headers(credential: str, app_name: str, public_url: str | None) -> dict[str, str]:
    """What the upstream call carries: the user's funding credential and the app's attribution."""
    headers = {
        "authorization": f"Bearer {credential}",
        "content-type": "application/json",
        "accept-encoding": "identity",
        "x-openrouter-title": app_name,
        "x-title": app_name,
    }
    if public_url:
        headers["http-referer"] = public_url
    return headers


def relayed_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers that go on to the client, as ASGI wants them."""
    return [
        (name.lower().encode(), value.encode()) for name, value in headers.items() if name.lower() not in _NOT_RELAYED
    ]


async def read_body(receive: Receive, limit: int, *, timeout: float) -> bytes:
    """The whole request body, refused as soon as it passes ``limit`` bytes or ``timeout`` seconds.

    The deadline is for the whole body: a client trickling a byte a second would pass any
    deadline on each read.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    # The pieces, joined once at the end: one copy of the body, where a growing bytearray copies it
    # as it grows and once more into bytes (a MiB in 16 pieces: about 1 ms against 0.03).
    pieces: list[bytes] = []
    size = 0
    try:
        while True:
            message = await _received(receive, deadline)
            if message["type"] == "http.disconnect":
                raise InvalidRequestError("the client went away before sending the whole request")
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"the request body is larger than {limit} bytes")
            if not more:
                # The whole body in one message, the common case, goes as it came: no copy.
                return chunk if not pieces else b"".join([*pieces, chunk])
            pieces.append(chunk)
    except TimeoutError as exc:
        raise RequestTimeoutError(f"the request body did not arrive within {timeout:g} seconds") from exc


async def _received(receive: Receive, deadline: float) -> Message:
    """The next message, by ``deadline``. The server's ``receive`` is started on this stack, and the
    deadline's timer is set only if it has to wait: a body that came with its head (most do) is
    read with no timer at all, where ``asyncio.timeout`` cost more than the rest of the read."""
    pending: Awaitable[Message] = receive()
    if isinstance(pending, Coroutine):
        step: FirstStep[Message] = FirstStep(pending)
        if step.done:
            return step.result
        pending = step
    async with asyncio.timeout_at(deadline):
        return await pending


def cut_off_error(reason: str) -> WattfareError:
    """Why the proxy ended a stream, as the error its endpoint's cut-off event carries."""
    if reason == "revoked":
        return NotConnectedError("the user disconnected their AI budget; the stream was stopped")
    if reason == "upstream":
        return UpstreamError("the model provider dropped the stream")
    return BudgetExceededError("the user's monthly cap is reached; the stream was stopped")


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: WattfareError, shape: Callable[[WattfareError], bytes] | None = None) -> None:
    """The error's status and headers, its body in our shape or the endpoint's (``shape``: Anthropic's)."""
    headers = [(name.lower().encode(), value.encode()) for name, value in error.response_headers().items()]
    await send_bytes(send, error.status, shape(error) if shape else error.body(), headers)
