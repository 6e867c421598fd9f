"""The user acts on the domain's dashboard: a revoke stops the app's next request, a new cap reaches it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx2

from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import ConnectionRecord
from wattfare_embed.testing.waiting import poll

from .conftest import MINI, MOUNT, Stack

SLOW_REPLY = " ".join(f"word{n}" for n in range(60))


def error_code(response: httpx2.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    lines = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


async def status_becomes(stack: Stack, user: str, status: str) -> ConnectionRecord:
    async def check() -> ConnectionRecord | None:
        record = await stack.connection(user)
        return record if record.status.value == status else None

    return await poll(check, what=f"{user}'s connection to become {status}")


async def test_a_revoke_on_the_dashboard_stops_the_next_request_through_the_webhook(stack: Stack) -> None:
    record = await stack.connect("ada")
    key = stack.funding_key(record)
    assert (await stack.chat("ada")).status_code == 200

    browser = stack.browser()
    revoked = await stack.on_dashboard(browser, str(record.grant_id), "revoke")
    assert revoked.status_code == 303 and revoked.headers["location"] == "/dashboard?notice=revoked"
    # The upstream key is gone before the dashboard answers; the webhook went out with it.
    assert stack.fake.keys.find(key.secret) is None
    after = await status_becomes(stack, "ada", "revoked")
    assert after.sealed_credential is None, "the credential is dropped"
    assert stack.gate.delivered == 1

    calls_before = len([r for r in stack.fake.requests if r.path.endswith("/chat/completions")])
    assert error_code(await stack.chat("ada")) == (402, "not_connected")
    calls_after = len([r for r in stack.fake.requests if r.path.endswith("/chat/completions")])
    assert calls_after == calls_before, "refused before any upstream call"
    page = await browser.follow(revoked)
    assert "Revoked" in page.text and "No app can spend from your budget" in page.text


async def test_a_revoke_stops_an_open_stream_at_its_next_chunk(stack: Stack) -> None:
    record = await stack.connect("bea")
    stack.fake.reply_text = SLOW_REPLY
    stack.fake.chunk_delay = 0.1
    browser = stack.browser()
    await stack.dashboard(browser)  # signed in before the stream starts
    headers = {"authorization": f"Bearer {stack.keys.secret_key}", "x-wattfare-user": "bea"}
    body = {"model": MINI, "stream": True, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    received, revoked_at = b"", None
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        http.stream("POST", stack.mount_url + "/api/v1/chat/completions", json=body, headers=headers) as response,
    ):
        async for chunk in response.aiter_raw():
            received += chunk
            if revoked_at is None and len(sse_events(received)) >= 2:
                await stack.on_dashboard(browser, str(record.grant_id), "revoke")
                revoked_at = len(sse_events(received))
    events = sse_events(received)
    assert revoked_at is not None
    assert events[-1]["error"]["code"] == "not_connected", "the stream ends with a typed stop"
    assert len(events) <= revoked_at + 3, "stopped at the next chunk, not at the end of the reply"
    assert len(events) < len(SLOW_REPLY.split())


async def test_with_webhooks_blocked_the_upstream_refusing_the_deleted_key_is_the_backstop(stack: Stack) -> None:
    record = await stack.connect("cy")
    stack.gate.down = True
    await stack.on_dashboard(stack.browser(), str(record.grant_id), "revoke")
    assert (await stack.connection("cy")).status.value == "active", "the app has not heard of it"

    refused = await stack.chat("cy")
    assert error_code(refused) == (402, "funding_invalid"), refused.text
    assert (await stack.connection("cy")).status.value == "funding_invalid"
    assert error_code(await stack.chat("cy")) == (402, "funding_invalid"), "and it stays refused"
    assert stack.gate.refused >= 1 and stack.fake.spend_by_key() == {}


async def test_a_cap_changed_on_the_dashboard_reaches_the_embed(stack: Stack) -> None:
    record = await stack.connect("dee", monthly_usd="10")
    key = stack.funding_key(record)
    browser = stack.browser()

    lowered = await stack.on_dashboard(browser, str(record.grant_id), "cap", monthly_usd="3")
    assert lowered.headers["location"] == "/dashboard?notice=updated"
    assert key.limit == Decimal("3"), "the upstream key's limit changes first"

    async def cap_is(usd: str) -> ConnectionRecord | None:
        found = await stack.connection("dee")
        return found if found.monthly_cap == micros_from_usd(usd) else None

    await poll(lambda: cap_is("3"), what="the lowered cap in the embed")
    await stack.on_dashboard(browser, str(record.grant_id), "cap", monthly_usd="25.50")
    assert key.limit == Decimal("25.5")
    await poll(lambda: cap_is("25.50"), what="the raised cap in the embed")
    assert (await stack.embed.status("dee")).monthly_cap == micros_from_usd("25.50")
    page = await stack.dashboard(browser)
    assert "$25.50" in page.text

    refused = await stack.on_dashboard(browser, str(record.grant_id), "cap", monthly_usd="-1")
    assert refused.headers["location"] == "/dashboard?notice=invalid" and key.limit == Decimal("25.5")


async def test_the_upstream_keys_own_limit_stops_spending_when_the_local_cap_is_forced_too_high(stack: Stack) -> None:
    record = await stack.connect("eve", monthly_usd="1")
    key = stack.funding_key(record)
    assert (await stack.chat("eve")).status_code == 200
    # The app's metering is wrong: its local cap says $100 while the grant allows $1 ...
    await stack.embed.store.set_cap(stack.keys.app_id, "eve", micros_from_usd("100"), record.updated_at)
    # ... and spend it never saw has used the key up.
    key.usage = key.limit or Decimal(0)

    refused = await stack.chat("eve")
    assert error_code(refused) == (402, "budget_exceeded"), refused.text
    assert "Key limit exceeded" in refused.json()["error"]["message"], "the upstream's own 403 said so"
    last = [r for r in stack.fake.requests if r.path.endswith("/chat/completions")][-1]
    assert last.headers["authorization"] == f"Bearer {key.secret}"
    assert (await stack.connection("eve")).status.value == "active", "a spent budget is not broken funding"


async def test_the_dashboard_shows_this_months_spend_from_the_upstream_key(stack: Stack) -> None:
    record = await stack.connect("fay", monthly_usd="10")
    stack.funding_key(record).usage = Decimal("1.25")
    page = await stack.dashboard(stack.browser())
    row = page.text.split(f'data-grant="{record.grant_id}"')[1].split("</tr>")[0]
    assert "$10.00" in row and "$1.25" in row
    assert MOUNT not in row
