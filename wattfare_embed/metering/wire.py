"""The wire of a metered call: the request body we accept, and the bytes we add to a response.

Everything else in a response is the upstream's, forwarded as it came.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive, Send

from ..errors import (
    BudgetExceededError,
    InvalidRequestError,
    NotConnectedError,
    PayloadTooLargeError,
    UpstreamError,
    WattfareError,
)

__all__ = ["COMPLETION_LIMIT_FIELDS", "cut_off_event", "parse_request", "read_body", "send_bytes", "send_error"]

COMPLETION_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


def parse_request(body: bytes, kind: str) -> dict[str, Any]:
    """The JSON object of a chat (``kind="chat"``) or embeddings request, checked before anything is held."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError("the request body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError('`model` is required, e.g. "openai/gpt-4o-mini"')
    if kind == "chat":
        messages = payload.get("messages")
        if not (isinstance(messages, list) and messages) and not isinstance(payload.get("prompt"), str):
            raise InvalidRequestError("`messages` must be a non-empty list")
        if "stream" in payload and not isinstance(payload["stream"], bool):
            raise InvalidRequestError("`stream` must be true or false")
        if payload.get("stream_options") is not None and not isinstance(payload["stream_options"], dict):
            raise InvalidRequestError("`stream_options` must be an object")
        for name in (*COMPLETION_LIMIT_FIELDS, "n"):
            # A limit we cannot read must not be replaced by a larger one of ours.
            value = payload.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidRequestError(f"`{name}` must be a positive integer")
    elif not isinstance(payload.get("input"), (str, list)):
        raise InvalidRequestError("`input` must be a string or a list")
    return payload


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refused as soon as it passes ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequestError("the client went away before sending the whole request")
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise PayloadTooLargeError(f"the request body is larger than {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


def cut_off_event(reason: str) -> bytes:
    """The one event that ends a stream we stopped, then ``[DONE]``.

    A bare ``{"error": {"code", "message"}}``: every client surfaces it as an error (the openai SDK
    raises ``APIError`` with it as the body, and the SDKs built on it with it; both AI SDK
    providers emit an error part). With ``choices`` beside it, as OpenRouter's own mid-stream error
    has, the AI SDK's ``@ai-sdk/openai`` reads a normal chunk and drops the error.
    """
    error: WattfareError
    if reason == "revoked":
        error = NotConnectedError("the user disconnected their AI budget; the stream was stopped")
    elif reason == "upstream":
        error = UpstreamError("the model provider dropped the stream")
    else:
        error = BudgetExceededError("the user's monthly cap is reached; the stream was stopped")
    return b"data: " + json.dumps(error.to_json(), separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n"


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: WattfareError) -> None:
    headers = [(name.lower().encode(), value.encode()) for name, value in error.response_headers().items()]
    await send_bytes(send, error.status, error.body(), headers)
