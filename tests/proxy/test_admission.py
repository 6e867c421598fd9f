"""Admission: what may be sent upstream, and with how many tokens, before anything is spent."""

from __future__ import annotations

from typing import Any

from wattfare_embed.money import micros_from_usd

from .conftest import HELLO, MINI, SONNET, Proxied, error_of, estimate_prompt_tokens, running_proxy

SONNET_PROMPT = 3  # µ$ a token
SONNET_COMPLETION = 15


def _prompt_cost(body: dict[str, Any]) -> int:
    return estimate_prompt_tokens(body) * SONNET_PROMPT


async def test_unknown_model_is_refused_without_an_upstream_call(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    response = await lite.chat(user_id, model="acme/no-such-model")

    assert error_of(response) == (400, "invalid_request")
    assert "acme/no-such-model" in response.json()["error"]["message"]
    assert lite.upstream_calls() == []
    assert await lite.ledger(user_id) == []


async def test_unpriced_model_is_refused_under_a_cap(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    response = await lite.chat(user_id, model="openrouter/auto")

    assert error_of(response) == (400, "invalid_request")
    assert "allow_unpriced_models" in response.json()["error"]["message"]
    assert lite.upstream_calls() == []
    assert await lite.ledger(user_id) == []


async def test_unpriced_model_runs_when_allowed_and_is_charged_what_the_upstream_reports(
    keys: Any, sqlite_url: str, user_id: str
) -> None:
    async with running_proxy(keys, sqlite_url, allow_unpriced_models=True) as proxy:
        await proxy.connect(user_id, "2")

        response = await proxy.chat(user_id, model="openrouter/auto")

        assert response.status_code == 200, response.text
        assert response.json()["model"] == MINI  # the router's pick, as the upstream bills it
        [row] = await proxy.settled(user_id, 1)
        assert row.cost_source == "reported"
        assert row.cost == micros_from_usd(proxy.generation(row.generation_id).total_cost)
        record = await proxy.connection(user_id)
        assert (record.spent, record.reserved) == (row.cost, 0)


async def test_absent_max_tokens_is_clamped_to_what_the_cap_affords(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.01")  # 10 000 µ$: far less than Sonnet's 64 000-token default output

    response = await lite.chat(user_id, model=SONNET)

    assert response.status_code == 200, response.text
    [call] = lite.upstream_calls()
    sent = call.json["max_tokens"]
    assert sent == (10_000 - _prompt_cost({"messages": HELLO})) // SONNET_COMPLETION
    await lite.settled(user_id, 1)


async def test_unaffordable_max_tokens_is_clamped_and_affordable_one_is_kept(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.01")

    clamped = await lite.chat(user_id, model=SONNET, max_tokens=5000)
    kept = await lite.chat(user_id, model=SONNET, max_tokens=40)
    completion_field = await lite.chat(user_id, model=SONNET, max_completion_tokens=5000)

    assert clamped.status_code == kept.status_code == completion_field.status_code == 200
    first, second, third = lite.upstream_calls()
    affordable = first.json["max_tokens"]
    prompt_cost = _prompt_cost({"messages": HELLO})
    assert prompt_cost + affordable * SONNET_COMPLETION <= 10_000 < prompt_cost + (affordable + 1) * SONNET_COMPLETION
    assert second.json["max_tokens"] == 40
    assert 0 < third.json["max_completion_tokens"] < 5000
    assert "max_tokens" not in third.json or third.json["max_tokens"] <= third.json["max_completion_tokens"]
    await lite.settled(user_id, 3)


async def test_several_choices_are_each_clamped_to_their_share(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.01")

    one = await lite.chat(user_id, model=SONNET)
    three = await lite.chat(user_id, model=SONNET, n=3)

    assert one.status_code == three.status_code == 200
    single, triple = (call.json["max_tokens"] for call in lite.upstream_calls())
    prompt_cost = _prompt_cost({"messages": HELLO})
    assert (
        prompt_cost + 3 * triple * SONNET_COMPLETION
        <= 10_000 - one_charge(lite)
        < prompt_cost + 3 * (triple + 1) * SONNET_COMPLETION
    )
    assert triple < single // 2
    await lite.settled(user_id, 2)


def one_charge(proxy: Proxied) -> int:
    [first] = proxy.fake.ledger.records[:1]
    return micros_from_usd(first.total_cost)


async def test_unaffordable_prompt_is_refused_before_any_upstream_call(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.001")  # 1 000 µ$; the prompt below is about 1 000 tokens of Sonnet: ~3 000 µ$
    messages = [{"role": "user", "content": "word " * 600}]

    response = await lite.chat(user_id, model=SONNET, messages=messages)

    assert error_of(response) == (402, "budget_exceeded")
    assert response.headers["x-should-retry"] == "false"
    assert lite.upstream_calls() == []
    assert await lite.ledger(user_id) == []
    record = await lite.connection(user_id)
    assert (record.spent, record.reserved) == (0, 0)


async def test_a_user_at_the_cap_is_refused_before_any_upstream_call(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.001")
    lite.fake.reply_text = " ".join(["word"] * 200)

    first = await lite.chat(user_id, model=SONNET)  # clamped to what 1 000 µ$ pays for, all of it used
    second = await lite.chat(user_id, model=SONNET)

    assert first.status_code == 200
    assert error_of(second) == (402, "budget_exceeded")
    assert len(lite.upstream_calls()) == 1
    record = await lite.connection(user_id)
    assert record.spent <= record.monthly_cap
    assert record.reserved == 0
