"""What the upstream is told (every output limit clamped, the prices pinned) and what users see of
the money held for requests in flight (held, not spent; a distinct refusal with Retry-After)."""

from __future__ import annotations

import asyncio

from wattfare_embed import AppKeys
from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.waiting import poll

from .conftest import MINI, SONNET, Proxied, error_of, estimate_prompt_tokens, running_proxy


async def _in_flight(proxy: Proxied) -> bool | None:
    return True if proxy.upstream_calls() else None


async def test_the_prices_the_hold_assumed_are_pinned_upstream_as_max_price(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    await lite.chat(user_id, max_tokens=20)
    await lite.chat(user_id, max_tokens=20, provider={"sort": "throughput", "max_price": {"prompt": 0.1}})
    await lite.chat(user_id, max_tokens=20, provider={"max_price": {"prompt": 9, "completion": 0.5, "request": 1}})

    first, lower, higher = (call.json["provider"] for call in lite.upstream_calls())
    # USD per million tokens for prompt and completion (gpt-4o-mini: $0.15 and $0.60), USD per request.
    assert first == {"max_price": {"prompt": 0.15, "request": 0, "completion": 0.6}}
    assert lower == {"sort": "throughput", "max_price": {"prompt": 0.1, "request": 0, "completion": 0.6}}
    assert higher == {"max_price": {"prompt": 0.15, "completion": 0.5, "request": 0}}  # the lower of each wins
    await lite.settled(user_id, 3)


async def test_a_request_with_images_pins_the_per_image_price_too(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}

    await lite.chat(user_id, max_tokens=20, messages=[{"role": "user", "content": [image]}])

    [call] = lite.upstream_calls()
    assert call.json["provider"]["max_price"]["image"] == 0.007225
    await lite.settled(user_id, 1)


async def test_a_provider_dearer_than_the_pinned_prices_refuses_rather_than_bills(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.add_provider(MINI, "Pricey", prompt="0.0000003")

    # The client asks for that provider only: it lists a prompt price twice the one the hold assumed.
    response = await lite.chat(user_id, max_tokens=20, provider={"only": ["pricey"]})

    assert error_of(response) == (400, "invalid_request")
    assert "max_price" in response.json()["error"]["message"]
    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost) == ("released", 0)
    assert lite.fake.ledger.records == []


async def test_every_output_limit_is_clamped_and_reasoning_kept_within_it(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.002")  # 2,000 µ$: about 130 tokens of Sonnet

    await lite.chat(user_id, model=SONNET, max_completion_tokens=5_000, reasoning={"max_tokens": 4_000})
    await lite.chat(user_id, model=SONNET, max_tokens=50, reasoning={"max_tokens": 20, "exclude": True})
    await lite.chat(user_id, model=SONNET, reasoning={"effort": "high"})

    clamped, kept, effort = (call.json for call in lite.upstream_calls())
    affordable = clamped["max_completion_tokens"]
    assert 0 < affordable < 200
    assert clamped["reasoning"] == {"max_tokens": affordable}
    assert kept["max_tokens"] == 50 and kept["reasoning"] == {"max_tokens": 20, "exclude": True}
    # Effort is a share of max_tokens, which is always sent, clamped: it cannot size itself from 64,000.
    assert effort["reasoning"] == {"effort": "high"} and effort["max_tokens"] < 200
    await lite.settled(user_id, 3)


async def test_a_request_holds_no_more_than_the_per_request_ceiling(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    async with running_proxy(keys, sqlite_url, max_request_hold_usd="0.01") as proxy:
        await proxy.connect(user_id, "10")

        response = await proxy.chat(user_id, model=SONNET)  # no max_tokens: 64,000 tokens would hold $0.96

        assert response.status_code == 200
        [call] = proxy.upstream_calls()
        prompt_cost = estimate_prompt_tokens({"messages": call.json["messages"]}) * 3
        assert call.json["max_tokens"] == (10_000 - prompt_cost) // 15
        [row] = await proxy.settled(user_id, 1)
        assert row.reserved <= 10_000


async def test_the_default_ceiling_lets_one_reply_hold_at_most_a_dollar(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "10")

    await lite.chat(user_id, model="anthropic/claude-opus-4")  # 32,000 tokens at $75 a million: $2.40

    [row] = await lite.settled(user_id, 1)
    assert row.reserved == micros_from_usd(1)
    [call] = lite.upstream_calls()
    assert call.json["max_tokens"] < 1_000_000 // 75


async def test_money_in_flight_is_shown_held_not_spent(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "1")
    lite.recorder.first_byte_gate = gate = asyncio.Event()
    call = asyncio.ensure_future(lite.chat(user_id, model=SONNET, max_tokens=1_000))
    await poll(lambda: _in_flight(lite), what="the request to reach the upstream")
    session = await lite.wf.create_session(user_id)

    during = (await lite.http.get("/api/v1/connections", headers={"authorization": f"Bearer {session.token}"})).json()
    gate.set()
    await call
    [row] = await lite.settled(user_id, 1)
    after = (await lite.wf.status(user_id)).to_json()

    held = row.reserved / 1_000_000
    assert (during["spentUsd"], during["remainingUsd"]) == (0, 1)  # nothing charged yet: the bar stays full
    assert during["heldUsd"] == held > 0
    assert during["availableUsd"] == round(1 - held, 6)
    assert after["heldUsd"] == 0 and after["spentUsd"] == row.cost / 1_000_000
    assert after["remainingUsd"] == after["availableUsd"] == round(1 - after["spentUsd"], 6)


async def test_a_request_refused_only_for_holds_in_flight_says_so_and_when_to_retry(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id, "0.02")
    lite.recorder.first_byte_gate = gate = asyncio.Event()
    first = asyncio.ensure_future(lite.chat(user_id, model=SONNET))  # holds all it can: the whole cap
    await poll(lambda: _in_flight(lite), what="the first request to reach the upstream")

    refused = await lite.chat(user_id, model=SONNET)

    assert error_of(refused) == (402, "budget_exceeded")
    message = refused.json()["error"]["message"]
    assert "in flight" in message and "try again" in message
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["x-should-retry"] == "true"  # nothing was charged: a retry is safe
    gate.set()
    assert (await first).status_code == 200
    await lite.settled(user_id, 1)

    again = await lite.chat(user_id, model=SONNET, max_tokens=20)

    assert again.status_code == 200
    await lite.settled(user_id, 2)


async def test_a_cap_that_is_spent_is_refused_without_a_retry_hint(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.001")
    lite.fake.reply_text = " ".join(["word"] * 200)
    await lite.chat(user_id, model=SONNET)
    await lite.settled(user_id, 1)

    refused = await lite.chat(user_id, model=SONNET)

    assert error_of(refused) == (402, "budget_exceeded")
    assert "monthly cap" in refused.json()["error"]["message"]
    assert "retry-after" not in refused.headers and refused.headers["x-should-retry"] == "false"
