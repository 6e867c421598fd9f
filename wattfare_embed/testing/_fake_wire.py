"""Wire details every endpoint of the fake OpenRouter shares: the error shape, money in JSON, ids, times."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

JSONObject = dict[str, Any]

_ID_ALPHABET = string.ascii_letters + string.digits


class OpenRouterError(Exception):
    """An error answered before the first byte, as `{"error": {"code", "message"}}` with status == code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        metadata: JSONObject | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.metadata = metadata

    def response(self, *, anthropic: bool = False) -> JSONResponse:
        """The error body; ``anthropic`` for the Messages skin, which answers in Anthropic's shape
        (`{"type": "error", "error": {"type", "message"}}`, with OpenRouter's `error_type`)."""
        if anthropic:
            shaped: JSONObject = {"type": anthropic_error_type(self.status), "message": self.message}
            if self.metadata and self.metadata.get("error_type"):
                shaped["error_type"] = self.metadata["error_type"]
            return JSONResponse({"type": "error", "error": shaped}, status_code=self.status, headers=self.headers)
        error: JSONObject = {"code": self.status, "message": self.message}
        if self.metadata is not None:
            error["metadata"] = self.metadata
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


# Anthropic's error types by HTTP status (its API errors page).
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_ERROR_TYPES.get(status, "api_error")


def usd(amount: Decimal | None) -> float | None:
    """Money leaves the fake as a JSON number, like OpenRouter's; inside it stays a Decimal."""
    return None if amount is None else float(amount)


def parse_usd(value: object, field: str) -> Decimal | None:
    """A non-negative USD amount from a JSON body (number, numeric string or null)."""
    if value is None:
        return None
    # bool is an int subclass; `"limit": true` is a client bug, not one dollar.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise OpenRouterError(400, f"{field} must be a number or null")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise OpenRouterError(400, f"{field} must be a number or null") from None
    if not amount.is_finite() or amount < 0:
        raise OpenRouterError(400, f"{field} must be a non-negative number")
    return amount


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_generation_id(now: float) -> str:
    # Real ids look like gen-1764031697-AbCdEfGhIjKlMnOpQrSt.
    return f"gen-{int(now)}-{random_token(20)}"


def compact_json(payload: object) -> bytes:
    # OpenRouter's SSE payloads carry no spaces; clients that split naively should meet the real thing.
    return json.dumps(payload, separators=(",", ":")).encode()


async def json_object(request: Request) -> JSONObject:
    try:
        parsed = json.loads(await request.body())
    except ValueError:
        raise OpenRouterError(400, "Invalid JSON body") from None
    if not isinstance(parsed, dict):
        raise OpenRouterError(400, "The request body must be a JSON object")
    return parsed
