"""The server-side client: ``wf.user(uid)`` with ``openai()`` metered in process, errors, pydantic-ai, sessions."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx2
import openai
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from wattfare_embed import (
    BudgetExceededError,
    FundingInvalidError,
    NotConnectedError,
    RateLimitedError,
    Wattfare,
    is_budget_exceeded,
    is_not_connected,
    to_wattfare_error,
)
from wattfare_embed.client import INTERNAL_BASE_URL
from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import (
    MINI,
    MOUNT,
    REPLY,
    EmbedFactory,
    Upstream,
    bearer,
    connect_user,
    connect_with_dev_consent,
    connection,
    settled,
)

HELLO = [{"role": "user", "content": "Say hello"}]


def content_of(chunk: Any) -> str:
    return (chunk.choices[0].delta.content or "") if chunk.choices else ""


async def test_openai_client_streams_token_by_token_in_process(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    wf = new_embed()
    await connect_user(wf, user_id)  # the host app is gone after this: no HTTP server serves the embed
    upstream.fake.chunk_delay = 0.05
    client = wf.user(user_id).openai()
    assert isinstance(client, openai.AsyncOpenAI)
    assert str(client.base_url).rstrip("/") == INTERNAL_BASE_URL

    sent = time.monotonic()
    stream = await client.chat.completions.create(model=MINI, messages=HELLO, stream=True)
    arrivals: list[tuple[float, str]] = []
    async for chunk in stream:
        arrivals.append((time.monotonic() - sent, content_of(chunk)))
    await client.close()

    assert "".join(text for _, text in arrivals) == REPLY
    with_text = [at for at, text in arrivals if text]
    assert len(with_text) > 5
    # Spread out like the upstream sent them, not one buffered blob at the end.
    assert with_text[-1] - with_text[0] > 0.3
    assert with_text[0] < with_text[-1] / 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(with_text)]
    assert sum(gap > 0.02 for gap in gaps) >= len(gaps) // 2

    record, rows = await settled(wf, user_id, 1)
    assert record.spent > 0 and record.reserved == 0
    assert rows[0].state == "settled" and rows[0].cost_source == "reported"
    assert micros_from_usd(sum(upstream.fake.spend_by_key().values())) == record.spent
    # The in-process call carried the user: the upstream saw the proxy's clamped, attributed request.
    forwarded = upstream.chat_calls()[-1].json
    assert forwarded["stream_options"] == {"include_usage": True} and forwarded["user"]
    assert user_id not in str(forwarded), "the app's user id never reaches the upstream in clear"


async def test_openai_client_does_not_retry(new_embed: EmbedFactory, upstream: Upstream, user_id: str) -> None:
    wf = new_embed()
    await connect_user(wf, user_id)
    client = wf.user(user_id).openai()
    assert client.max_retries == 0
    upstream.fake.inject(status=429, headers={"Retry-After": "1"}, count=3)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MINI, messages=HELLO)
    assert caught.value.response.headers["x-should-retry"] == "true"  # the SDK would retry if allowed to
    assert len(upstream.chat_calls()) == 1, "one call, no retries that could charge twice"
    error = to_wattfare_error(caught.value)
    assert isinstance(error, RateLimitedError)
    assert error.response_headers()["Retry-After"] == "1", "a host re-raising it can still say when to retry"
    assert not is_budget_exceeded(caught.value) and not is_not_connected(caught.value)
    record, rows = await settled(wf, user_id, 1)
    assert record.spent == 0 and rows[0].cost == 0


@pytest.mark.parametrize("how", ["close", "break_out_of_async_with"])
async def test_closing_a_stream_early_settles_the_ledger(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str, how: str
) -> None:
    wf = new_embed()
    await connect_user(wf, user_id)
    upstream.fake.chunk_delay = 0.1
    client = wf.user(user_id).openai()
    received = ""
    started = time.monotonic()
    if how == "close":
        stream = await client.chat.completions.create(model=MINI, messages=HELLO, stream=True)
        async for chunk in stream:
            received += content_of(chunk)
            if len(received.split()) >= 2:
                break
        assert (await connection(wf, user_id)).reserved > 0, "still held while the stream is open"
        await stream.close()
    else:
        async with await client.chat.completions.create(model=MINI, messages=HELLO, stream=True) as stream:
            async for chunk in stream:
                received += content_of(chunk)
                if len(received.split()) >= 2:
                    break
    record, rows = await settled(wf, user_id, 1)
    assert time.monotonic() - started < 1.0, "closing did not wait for the rest of the reply"
    assert REPLY.startswith(received.strip()) and received.strip() != REPLY
    assert record.reserved == 0
    assert rows[0].state in ("settled", "released")
    assert record.spent == (rows[0].cost or 0) <= rows[0].reserved
    await client.close()


async def test_not_connected_before_the_first_byte_is_seen_through_the_sdk_error(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    wf = new_embed()
    client = wf.user(user_id).openai()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=MINI, messages=HELLO, stream=True)
    exc = caught.value
    assert exc.status_code == 402
    assert is_not_connected(exc) and not is_budget_exceeded(exc)
    error = to_wattfare_error(exc)
    assert isinstance(error, NotConnectedError)
    assert (error.status, error.code) == (402, "not_connected") and "connected" in error.message
    # Seen through wrappers too: an app that re-raises keeps the cause.
    try:
        raise RuntimeError("the summary failed") from exc
    except RuntimeError as wrapped:
        assert is_not_connected(wrapped)
    assert upstream.chat_calls() == []
    assert (await wf.user(user_id).status()).status == "not_connected"


async def test_budget_exceeded_before_the_first_byte(new_embed: EmbedFactory, upstream: Upstream, user_id: str) -> None:
    wf = new_embed()
    await connect_user(wf, user_id)
    client = wf.user(user_id).openai()
    await client.chat.completions.create(model=MINI, messages=HELLO)
    await settled(wf, user_id, 1)
    assert await wf.lower_cap(user_id, 1) is not None  # 1 µ$: below what is already spent
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=MINI, messages=HELLO)
    assert caught.value.status_code == 402
    assert is_budget_exceeded(caught.value) and not is_not_connected(caught.value)
    assert isinstance(to_wattfare_error(caught.value), BudgetExceededError)
    assert len(upstream.chat_calls()) == 1


async def test_funding_invalid_counts_as_not_connected(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    wf = new_embed()
    await connect_user(wf, user_id)
    client = wf.user(user_id).openai()
    upstream.fake.inject(status=401)  # the upstream no longer accepts the user's funding key
    with pytest.raises(openai.APIStatusError) as first:
        await client.chat.completions.create(model=MINI, messages=HELLO)
    assert isinstance(to_wattfare_error(first.value), FundingInvalidError)
    assert is_not_connected(first.value) and not is_budget_exceeded(first.value)
    status = await wf.user(user_id).status()
    assert (status.connected, status.status) == (False, "funding_invalid")
    with pytest.raises(openai.APIStatusError) as second:  # refused here now, before the upstream
        await client.chat.completions.create(model=MINI, messages=HELLO)
    assert isinstance(to_wattfare_error(second.value), FundingInvalidError) and is_not_connected(second.value)
    assert len(upstream.chat_calls()) == 1
    await settled(wf, user_id, 1)


async def test_mid_stream_budget_cut_off_raises_an_api_error_the_helpers_see_through(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    wf = new_embed()
    await connect_user(wf, user_id)
    upstream.fake.inject(ignore_max_tokens=True)  # the provider overruns the clamped max_tokens
    client = wf.user(user_id).openai()
    stream = await client.chat.completions.create(model=MINI, messages=HELLO, stream=True, max_tokens=2)
    received = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received += content_of(chunk)
    exc = caught.value
    assert not isinstance(exc, openai.APIStatusError), "the response had started: a 200 cut off mid-stream"
    assert received and REPLY.startswith(received) and received != REPLY
    assert is_budget_exceeded(exc) and not is_not_connected(exc)
    error = to_wattfare_error(exc)
    assert isinstance(error, BudgetExceededError) and error.status == 402
    assert upstream.chat_calls()[-1].json["max_tokens"] == 2
    record, rows = await settled(wf, user_id, 1)
    assert record.reserved == 0
    assert 0 < record.spent <= rows[0].reserved, "never charged more than was held"


async def test_disconnect_mid_stream_stops_it_with_not_connected(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    wf = new_embed()
    await connect_user(wf, user_id)
    upstream.fake.chunk_delay = 0.05
    ai = wf.user(user_id)
    stream = await ai.openai().chat.completions.create(model=MINI, messages=HELLO, stream=True)
    received = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received += content_of(chunk)
            if received and (await ai.status()).connected:
                await ai.disconnect()
    assert is_not_connected(caught.value)
    assert received != REPLY
    status = await ai.status()
    assert (status.connected, status.status) == (False, "revoked")
    assert (await connection(wf, user_id)).reserved == 0


def test_helpers_ignore_unrelated_exceptions() -> None:
    request = httpx2.Request("POST", "http://x/chat/completions")
    assert to_wattfare_error(ValueError("nope")) is None
    assert to_wattfare_error(openai.APIConnectionError(request=request)) is None
    plain_upstream_error = openai.APIError("provider error", request, body={"message": "boom"})
    assert to_wattfare_error(plain_upstream_error) is None
    assert not is_budget_exceeded(plain_upstream_error) and not is_not_connected(plain_upstream_error)
    ours = BudgetExceededError("cap")
    assert to_wattfare_error(ours) is ours


async def test_pydantic_ai_agent_runs_on_the_user_model_and_is_billed_to_the_user(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    from pydantic_ai import Agent

    wf = new_embed()
    await connect_user(wf, user_id)
    agent = Agent(wf.user(user_id).model(MINI), instructions="Be brief.")
    result = await agent.run("Say hello")
    assert result.output == REPLY
    record, rows = await settled(wf, user_id, 1)
    assert record.spent > 0 and rows[0].model == MINI
    assert micros_from_usd(sum(upstream.fake.spend_by_key().values())) == record.spent
    assert upstream.chat_calls()[-1].json["model"] == MINI


async def test_create_session_returns_a_token_the_http_api_accepts(new_embed: EmbedFactory, user_id: str) -> None:
    wf = new_embed()
    session = await wf.create_session(user_id, monthly_usd=5)
    assert session.token == session["token"] and session.expires_at > time.time()
    async with (
        serve_in_loop(Starlette(routes=[Mount(MOUNT, app=wf)])) as base_url,
        httpx2.AsyncClient(base_url=base_url) as browser,
    ):
        before = await browser.get(f"{MOUNT}/api/v1/connections", headers=bearer(session.token))
        assert before.status_code == 200, before.text
        assert (before.json()["appUserId"], before.json()["connected"]) == (user_id, False)
        # No amount in the consent call: the session's requested cap is used.
        consent = await browser.post(f"{MOUNT}/api/v1/consent", json={}, headers=bearer(session.token))
        assert consent.status_code == 200, consent.text
        result = await connect_with_dev_consent(browser, session.token, monthly_usd=None)
    assert result["status"]["monthlyUsd"] == 5
    status = await wf.user(user_id).status()
    assert (status.connected, status.monthly_cap) == (True, micros_from_usd(5))

    handle_session = await wf.user(user_id).create_session()
    assert wf.tokens.verify(handle_session.token).app_user_id == user_id


async def test_user_handle_status_and_disconnect(new_embed: EmbedFactory, upstream: Upstream, user_id: str) -> None:
    wf: Wattfare = new_embed()
    ai = wf.user(user_id)
    assert repr(ai) == f"WattfareUser({user_id!r})"
    assert (await ai.status()).connected is False
    await connect_user(wf, user_id, monthly_usd=2)
    status = await ai.status()
    assert (status.connected, status.monthly_cap, status.remaining) == (True, micros_from_usd(2), micros_from_usd(2))
    await ai.disconnect()
    await ai.disconnect()  # twice is fine
    assert (await ai.status()).status == "revoked"
    with pytest.raises(openai.APIStatusError) as caught:
        await ai.openai().chat.completions.create(model=MINI, messages=HELLO)
    assert is_not_connected(caught.value)
    assert upstream.chat_calls() == []


async def test_openai_client_bills_a_user_whose_id_is_not_ascii(new_embed: EmbedFactory, upstream: Upstream) -> None:
    wf = new_embed()
    user = "josé@example.com"  # a valid app user id everywhere else (sessions, status)
    await connect_user(wf, user)
    reply = await wf.user(user).openai().chat.completions.create(model=MINI, messages=HELLO)
    assert reply.choices[0].message.content == REPLY
    record, _ = await settled(wf, user, 1)
    assert record.spent > 0
