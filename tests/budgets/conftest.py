"""Receipts, alerts and reports: the proxy stack of tests/proxy, and helpers to read the new surfaces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.proxy.conftest import Proxied, running_proxy
from wattfare_embed import AppKeys
from wattfare_embed.testing.waiting import poll

__all__ = ["Proxied", "receipts_of", "running_proxy", "tokens_written"]


@pytest.fixture
async def proxy(keys: AppKeys, database_url: str) -> AsyncIterator[Proxied]:
    """The default stack, on SQLite and on PostgreSQL."""
    async with running_proxy(keys, database_url) as proxied:
        yield proxied


async def receipts_of(proxied: Proxied, user: str, **query: Any) -> dict[str, Any]:
    """``GET /api/v1/usage`` with the user's own session token."""
    session = await proxied.wf.create_session(user)
    response = await proxied.http.get(
        "/api/v1/usage", params=query, headers={"authorization": f"Bearer {session.token}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def tokens_written(proxied: Proxied, user: str, requests: int) -> list[dict[str, Any]]:
    """The user's receipts once all ``requests`` are final with their token counts (a stream's
    settle may still be under way when its last byte arrives)."""

    async def check() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await receipts_of(proxied, user, limit=200))["data"]
        if len(rows) == requests and all(row["tokensIn"] is not None for row in rows):
            return rows
        return None

    return await poll(check, what=f"token counts on {requests} receipts of {user}")
