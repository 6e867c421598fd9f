"""Turning an upstream failure before the first byte into one of our typed errors.

The upstream's own message is kept (it says what was wrong), but never verbatim: an
upstream may echo the request's ``Authorization``, so every credential is redacted from
it first, and it is cut to a readable length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._redaction import redact
from ..errors import (
    BudgetExceededError,
    FundingInvalidError,
    InvalidRequestError,
    RateLimitedError,
    UpstreamError,
    WattfareError,
)

__all__ = ["MAX_RELAYED_MESSAGE", "error_for_upstream_status"]

MAX_RELAYED_MESSAGE = 300  # characters of the upstream's message kept in ours


def _message(body: bytes, credential: str | None) -> str:
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        text = body[:2000].decode("utf-8", "replace")
    else:
        error = payload.get("error") if isinstance(payload, dict) else None
        text = str(error.get("message") or error.get("code") or "") if isinstance(error, dict) else ""
    return " ".join(redact(text, credential).split())


def _shown(text: str) -> str:
    # Cut only after redacting, so a cut can never leave half a key behind.
    return text if len(text) <= MAX_RELAYED_MESSAGE else text[: MAX_RELAYED_MESSAGE - 1] + "…"


def error_for_upstream_status(
    status: int, body: bytes, headers: Mapping[str, str], *, credential: str | None = None
) -> WattfareError:
    """Map an upstream HTTP error to what the app should do about it.

    402 "requires more credits, or fewer max_tokens" and 403 "Key limit exceeded"
    mean the user's own limit at the funding source is reached: ``budget_exceeded``.
    Any other 402 (the account is out of credit) and a 401 mean the funding
    itself no longer works: ``funding_invalid``, reconnect. ``headers`` must look
    names up case-insensitively (aiohttp's ``CIMultiDictProxy`` does). ``credential`` is the
    funding key the request was sent with, redacted from the message with every other secret.
    """
    full = _message(body, credential)
    lowered, message = full.lower(), _shown(full)
    if status == 401:
        return FundingInvalidError(
            "the upstream refused the user's funding credential; the user needs to connect again"
        )
    if status == 402:
        if "max_tokens" in lowered or "afford" in lowered or "limit" in lowered:
            return BudgetExceededError(f"the user's budget at the funding source cannot pay for this: {message}")
        return FundingInvalidError(f"the user's funding source is out of credit: {message}")
    if status == 403 and "key limit exceeded" in lowered:
        return BudgetExceededError(f"the user's limit at the funding source is reached: {message}")
    if status == 429:
        retry = headers.get("retry-after", "")
        # Seconds or an HTTP date; anything else is not passed on.
        extra = {"Retry-After": retry} if retry and retry.isascii() and retry.isprintable() and len(retry) <= 40 else {}
        return RateLimitedError(f"the upstream is rate limiting: {message}", headers=extra)
    if status in (400, 403, 404, 413, 422):
        return InvalidRequestError(f"the upstream refused the request: {message}")
    return UpstreamError(f"the model provider failed (HTTP {status}): {message}")
