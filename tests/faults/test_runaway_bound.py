"""The runaway bound: what an upstream that ignores ``max_tokens`` and generates faster than the
proxy reads bills past a stream's hold before it sees the close.

The proxy cuts the stream at the event that crossed the hold and closes the upstream connection at
once; what the upstream generated into the network buffers before it saw the close, it bills. The
embed bounds what it relays and when it closes, not what a provider generates meanwhile, so the
figure is measured here (the fake in a process of its own, generating as fast as it can) against
what SECURITY.md and the README state.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.proxy.conftest import HELLO, MOUNT, SONNET, estimate_prompt_tokens, sse_events
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import LedgerEntry, NewConnection
from wattfare_embed.testing.live_server import serve_in_loop
from wattfare_embed.testing.waiting import poll

from .processes import fake_upstream_process

# Stated in the README's streaming bullet and SECURITY.md: past the cut, an upstream generating as
# fast as it can billed at most this many output tokens more than the hold paid for (measured on
# loopback; the figure grows with the round trip to the provider and its generation speed).
STATED_OVERRUN_TOKENS = 5000
SONNET_OUTPUT_MICROS = 15  # a token


@pytest.fixture
async def flooding_upstream() -> AsyncIterator[str]:
    async with fake_upstream_process("--reply-words", "200000", "--chunk-delay", "0") as upstream:
        yield upstream


@pytest.mark.parametrize("max_tokens", [20, 400])
async def test_an_upstream_flooding_past_the_hold_bills_within_the_stated_bound(
    keys: AppKeys, tmp_path: Path, flooding_upstream: str, max_tokens: int
) -> None:
    wf = Wattfare(
        secret_key=keys.secret_key,
        publishable_key=keys.publishable_key,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'wattfare.db'}",
        upstream_url=flooding_upstream,
    )
    user = "u" + uuid.uuid4().hex[:8]
    async with wf, serve_in_loop(Starlette(routes=[Mount(MOUNT, app=wf)])) as base:
        sealed = wf.credentials.seal("sk-or-v1-" + uuid.uuid4().hex, f"{keys.app_id}/{user}")
        await wf.store.save_connection(NewConnection(keys.app_id, user, "dev", 5_000_000, sealed), int(time.time()))
        async with httpx2.AsyncClient(timeout=30) as client:
            await client.post(
                flooding_upstream.removesuffix("/api/v1") + "/_fake/faults", json={"ignore_max_tokens": True}
            )
            async with client.stream(
                "POST",
                f"{base}{MOUNT}/api/v1/chat/completions",
                json={"model": SONNET, "messages": HELLO, "stream": True, "max_tokens": max_tokens},
                headers={"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user},
            ) as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
        assert sse_events(raw)[-1]["error"]["code"] == "budget_exceeded"

        async def reconciled() -> LedgerEntry | None:
            await wf.proxy.sweep()
            [row] = await wf.store.ledger(keys.app_id, user)
            return row if row.cost_source == "reported" else None

        row = await poll(reconciled, what="the cut stream reconciled with the upstream's bill", timeout=30)
    hold = estimate_prompt_tokens({"messages": HELLO}) * 3 + max_tokens * SONNET_OUTPUT_MICROS
    assert row.reserved == hold
    overrun_tokens = ((row.cost or 0) - hold) / SONNET_OUTPUT_MICROS
    print(f"max_tokens={max_tokens}: billed {row.cost} µ$ for a {hold} µ$ hold, {overrun_tokens:.0f} tokens past it")
    # The ledger carries what the upstream billed, overrun included; the overrun stays within the bound.
    assert row.cost is not None and row.cost <= hold + STATED_OVERRUN_TOKENS * SONNET_OUTPUT_MICROS
    assert row.cost > 0 and micros_from_usd("0.0001") < row.cost
