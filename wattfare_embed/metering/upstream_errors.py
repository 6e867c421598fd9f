"""Turning an upstream failure before the first byte into one of our typed errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import (
    BudgetExceededError,
    FundingInvalidError,
    InvalidRequestError,
    RateLimitedError,
    UpstreamError,
    WattfareError,
)

__all__ = ["error_for_upstream_status"]


def _message(body: bytes) -> str:
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "")
    return ""


def error_for_upstream_status(status: int, body: bytes, headers: Mapping[str, str]) -> WattfareError:
    """Map an upstream HTTP error to what the app should do about it.

    402 "requires more credits, or fewer max_tokens" and 403 "Key limit exceeded"
    mean the user's own limit at the funding source is reached: ``budget_exceeded``.
    Any other 402 (the account is out of credit) and a 401 mean the funding
    itself no longer works: ``funding_invalid``, reconnect. ``headers`` must look
    names up case-insensitively (aiohttp's ``CIMultiDictProxy`` does).
    """
    message = _message(body)
    lowered = message.lower()
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
        extra = {"Retry-After": retry} if retry else {}
        return RateLimitedError(f"the upstream is rate limiting: {message}", headers=extra)
    if status in (400, 403, 404, 413, 422):
        return InvalidRequestError(f"the upstream refused the request: {message}")
    return UpstreamError(f"the model provider failed (HTTP {status}): {message}")
