"""Receipts: ``GET {mount}/api/v1/usage``, what an app spent of one user's budget, request by request.

The user's session token says whose rows these are, so a browser can show them and no user ever
sees another's. Pages run newest first; ``nextCursor`` (opaque) asks for the rows after them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._http import json_response
from .auth import require_session
from .errors import InvalidRequestError
from .money import usd_text
from .periods import period_of
from .store import Receipt

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "UsagePage", "parse_cursor", "receipt_routes", "usage_page"]

DEFAULT_PAGE = 50
MAX_PAGE = 200
# created_at, then the ledger id the store made ("req_" and 24 hex digits).
_CURSOR = re.compile(r"(\d{1,12})\.(req_[0-9a-f]{24})")


@dataclass(frozen=True, slots=True)
class UsagePage:
    """One page of a user's receipts for the current period."""

    app_user_id: str
    period: str
    receipts: list[Receipt]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "data": [_receipt_json(receipt) for receipt in self.receipts],
            "nextCursor": self.next_cursor,
            "hasMore": self.next_cursor is not None,
        }


def _receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "id": receipt.id,
        "createdAt": receipt.created_at,
        "settledAt": receipt.settled_at,
        "kind": receipt.kind,
        "model": receipt.model,
        "tokensIn": receipt.tokens_in,
        "tokensOut": receipt.tokens_out,
        "costMicros": receipt.cost,
        "costUsd": usd_text(receipt.cost),
        # "reported": the upstream's own figure; "estimated": priced here, from the tokens or the hold.
        "costSource": receipt.cost_source,
    }


def parse_cursor(value: str | None) -> tuple[int, str] | None:
    if value is None or value == "":
        return None
    match = _CURSOR.fullmatch(value)
    if match is None:
        raise InvalidRequestError("cursor must be a nextCursor from an earlier page")
    return int(match.group(1)), match.group(2)


def _parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(value)


async def usage_page(
    embed: Wattfare, app_user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE
) -> UsagePage:
    """A page of the user's charged requests this period, newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    before = parse_cursor(cursor)
    await embed.startup()
    await embed.proxy.unsettled.caught_up(app_user_id)  # every charge this process has answered
    period = period_of(time.time())
    # One row more than asked says whether there is a next page without a second query.
    rows = await embed.store.receipts(embed.keys.app_id, app_user_id, period, before=before, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = f"{page[-1].created_at}.{page[-1].id}" if more else None
    return UsagePage(app_user_id, period, page, next_cursor)


def receipt_routes(embed: Wattfare) -> list[Route]:
    async def read_usage(request: Request) -> Response:
        claims = require_session(request, embed.tokens)
        query = request.query_params
        page = await usage_page(
            embed, claims.app_user_id, cursor=query.get("cursor"), limit=_parse_limit(query.get("limit"))
        )
        return json_response(page.to_json())

    return [Route("/api/v1/usage", read_usage, methods=["GET"])]
