"""Small HTTP helpers shared by the endpoints: reading JSON, answering JSON, checking input."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ._json import parse_json
from .errors import InvalidRequestError, PayloadTooLargeError, RequestTimeoutError
from .money import Micros, micros_from_usd, micros_to_usd, usd_text

__all__ = [
    "bearer_token",
    "json_response",
    "parse_monthly_usd",
    "read_body",
    "read_json_object",
    "safe_return_path",
]


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


async def read_body(request: Request, max_bytes: int, *, timeout: float) -> bytes:
    """The whole body, refused past ``max_bytes`` (413) or when it takes longer than ``timeout`` (408).

    The deadline covers the whole body, not each read: a client sending a byte a second
    never times out a per-read deadline, and would hold the request open for as long as it liked.
    """
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise PayloadTooLargeError(f"the request body is larger than {max_bytes} bytes")
    except TimeoutError as exc:
        raise RequestTimeoutError(f"the request body did not arrive within {timeout:g} seconds") from exc
    except ClientDisconnect as exc:
        raise InvalidRequestError("the client went away before sending the whole request") from exc
    return bytes(body)


async def read_json_object(
    request: Request, max_bytes: int, *, timeout: float, allow_empty: bool = False
) -> dict[str, Any]:
    """The request body as a JSON object, or a typed ``invalid_request``."""
    content_type = request.headers.get("content-type", "")
    body = await read_body(request, max_bytes, timeout=timeout)
    if not body.strip() and allow_empty:
        return {}
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise InvalidRequestError("send the body as JSON with Content-Type: application/json")
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return payload


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def parse_monthly_usd(value: Any, *, maximum: Micros, field: str = "monthlyUsd") -> Micros:
    """A positive dollar amount (number or decimal string) no higher than ``maximum``.

    Compared with ``maximum`` before it is converted: ``"1e999999"`` is a valid decimal whose
    conversion to micro-dollars would overflow.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRequestError(f"{field} must be a number of US dollars")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        amount = Decimal(text) if len(text) <= 40 else None
    except InvalidOperation:
        amount = None
    if amount is None or amount.is_nan():
        raise InvalidRequestError(f"{field} must be a number of US dollars")
    if amount <= 0:
        raise InvalidRequestError(f"{field} must be more than zero")
    if amount > micros_to_usd(maximum):  # also infinity
        raise InvalidRequestError(f"{field} may be at most {usd_text(maximum)}")
    micros = micros_from_usd(amount)
    if micros <= 0:  # an exponent so small that the amount underflowed to nothing
        raise InvalidRequestError(f"{field} must be more than zero")
    return micros


_CONTROL = re.compile(r"[\x00-\x20\x7f\\]")


def safe_return_path(value: Any, default: str = "/") -> str:
    """A same-origin path to send the browser back to; anything off-site is refused.

    Refuses absolute and scheme-relative URLs (``//evil.example``), schemes such as
    ``javascript:``, backslashes (browsers read ``/\\evil.example`` as off-site)
    and control or space characters.
    """
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > 2048:
        raise InvalidRequestError("returnTo must be a path on this site, such as /settings")
    parts = urlsplit(value)
    if _CONTROL.search(value) or not value.startswith("/") or value.startswith("//") or parts.scheme or parts.netloc:
        raise InvalidRequestError("returnTo must be a path on this site, such as /settings")
    return value
