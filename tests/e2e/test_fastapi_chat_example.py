"""The ``make demo`` app (``example_apps/fastapi_chat``) driven over HTTP like its page drives it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2

from example_apps.fastapi_chat.app import create_app, current_user
from wattfare_embed import Wattfare
from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import (
    MOUNT,
    REPLY,
    EmbedFactory,
    Upstream,
    connect_with_dev_consent,
    disconnect,
    error_of,
    lower_cap,
    server_status,
    settled,
    sse_payloads,
)


@asynccontextmanager
async def demo(wf: Wattfare, *, simulated: bool = False) -> AsyncIterator[httpx2.AsyncClient]:
    """The demo app under uvicorn (its router lifespan starts the embed) and a browser with cookies."""
    async with (
        serve_in_loop(create_app(wf, simulated=simulated)) as base_url,
        httpx2.AsyncClient(base_url=base_url, timeout=20) as browser,
    ):
        yield browser


async def sign_in(browser: httpx2.AsyncClient, name: str) -> None:
    response = await browser.post("/login", json={"name": name})
    assert response.status_code == 200, response.text
    assert response.json() == {"user": name}
    assert browser.cookies.get("demo_user") == name
    assert (await browser.get("/me")).json() == {"user": name}


async def chat_events(browser: httpx2.AsyncClient, message: str) -> tuple[list[dict[str, object]], list[float]]:
    """POST /chat and read the SSE reply, with the arrival time of each network chunk."""
    arrivals: list[float] = []
    text = ""
    async with browser.stream("POST", "/chat", json={"message": message}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_text():
            arrivals.append(time.monotonic())
            text += chunk
    return sse_payloads(text), arrivals


async def test_index_page_has_the_publishable_key_and_connect_button_but_never_the_secret_key(
    new_embed: EmbedFactory,
) -> None:
    wf = new_embed(current_user)
    async with demo(wf) as browser:
        page = await browser.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert wf.keys.publishable_key in page.text
    assert "wattfare-connect" in page.text, "the <wattfare-connect> element"
    assert 'from "/wattfare/wattfare.js"' in page.text, "which the embed's own script defines"
    assert "/wattfare/session" in page.text
    assert wf.keys.secret_key not in page.text
    assert "const simulated = false;" in page.text
    assert "{{" not in page.text, "every placeholder is filled in"


async def test_index_page_says_replies_are_simulated_when_asked(new_embed: EmbedFactory) -> None:
    async with demo(new_embed(current_user), simulated=True) as browser:
        page = await browser.get("/")
    assert "const simulated = true;" in page.text
    assert "Replies are simulated" in page.text
    assert "Set <code>OPENROUTER_API_KEY</code> for real models" in page.text


async def test_in_hosted_mode_the_page_names_the_management_key(new_embed: EmbedFactory) -> None:
    app = create_app(new_embed(current_user), simulated=True, funding_key="OPENROUTER_MANAGEMENT_KEY")
    async with serve_in_loop(app) as base_url, httpx2.AsyncClient(base_url=base_url) as browser:
        page = await browser.get("/")
    assert "Set <code>OPENROUTER_MANAGEMENT_KEY</code> for real models" in page.text
    assert "OPENROUTER_API_KEY" not in page.text


async def test_login_rejects_an_empty_name_and_chat_needs_a_signed_in_user(new_embed: EmbedFactory) -> None:
    async with demo(new_embed(current_user)) as browser:
        empty = await browser.post("/login", json={"name": "  "})
        assert error_of(empty) == (400, "invalid_request")
        anonymous = await browser.post("/chat", json={"message": "hi"})
        assert error_of(anonymous) == (401, "auth")
        no_session = await browser.post(f"{MOUNT}/session")
        assert error_of(no_session) == (401, "auth")


async def test_chat_before_connecting_answers_402_not_connected(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    async with demo(new_embed(current_user)) as browser:
        await sign_in(browser, user_id)
        response = await browser.post("/chat", json={"message": "hi"})
    assert error_of(response) == (402, "not_connected")
    assert upstream.chat_calls() == [], "nothing reaches the upstream without a budget"


async def test_demo_user_connects_chats_is_metered_hits_the_cap_and_disconnects(
    new_embed: EmbedFactory, upstream: Upstream, database_url: str, user_id: str
) -> None:
    wf = new_embed(current_user, database_url=database_url)
    async with demo(wf) as browser:
        await sign_in(browser, user_id)

        # The page's button asks the embed for a session for the signed-in (cookie) user.
        session = await browser.post(f"{MOUNT}/session")
        assert session.status_code == 200, session.text
        token = session.json()["token"]
        result = await connect_with_dev_consent(browser, token, monthly_usd=2)
        assert result["status"]["appUserId"] == user_id
        assert result["status"]["monthlyUsd"] == 2
        before = await server_status(browser, wf, user_id)
        assert (before["connected"], before["spentUsd"]) == (True, 0)

        events, _ = await chat_events(browser, "Say hello")
        deltas = [event["delta"] for event in events if "delta" in event]
        assert len(deltas) > 3, "the reply streams in pieces"
        assert "".join(str(delta) for delta in deltas) == REPLY
        assert events[-1] == {"done": True}

        record, rows = await settled(wf, user_id, 1)
        assert record.spent > 0 and record.reserved == 0
        assert rows[0].state == "settled" and rows[0].cost == record.spent
        after = await server_status(browser, wf, user_id)
        assert after["spentUsd"] > 0
        assert after["remainingUsd"] < 2
        # What the user was charged is what the upstream charged their funding key.
        assert sum(upstream.fake.spend_by_key().values()) > 0
        assert micros_from_usd(sum(upstream.fake.spend_by_key().values())) == record.spent

        # Lower the cap below what is already spent: the next call is refused before the upstream.
        lowered = await lower_cap(browser, token, "0.000001")
        assert lowered["remainingUsd"] == 0
        calls = len(upstream.chat_calls())
        over = await browser.post("/chat", json={"message": "again"})
        assert error_of(over) == (402, "budget_exceeded")
        assert over.headers["x-should-retry"] == "false"
        assert len(upstream.chat_calls()) == calls
        await settled(wf, user_id, 1)

        await disconnect(browser, token)
        gone = await browser.post("/chat", json={"message": "hello?"})
        assert error_of(gone) == (402, "not_connected")
        status = await server_status(browser, wf, user_id)
        assert (status["connected"], status["status"]) == (False, "revoked")
        assert len(upstream.chat_calls()) == calls


async def test_chat_streams_deltas_as_they_arrive(new_embed: EmbedFactory, upstream: Upstream, user_id: str) -> None:
    upstream.fake.chunk_delay = 0.05
    wf = new_embed(current_user)
    async with demo(wf) as browser:
        await sign_in(browser, user_id)
        token = (await browser.post(f"{MOUNT}/session")).json()["token"]
        await connect_with_dev_consent(browser, token)
        started = time.monotonic()
        events, arrivals = await chat_events(browser, "Say hello")
        await settled(wf, user_id, 1)
    assert events[-1] == {"done": True}
    assert len(arrivals) > 3
    # The first words reach the browser long before the last: nothing buffers the stream.
    assert arrivals[-1] - arrivals[0] > 0.3
    assert arrivals[0] - started < (arrivals[-1] - started) / 2


async def test_browser_leaving_mid_reply_stops_the_upstream_and_settles(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    upstream.fake.chunk_delay = 0.1
    wf = new_embed(current_user)
    async with demo(wf) as browser:
        await sign_in(browser, user_id)
        token = (await browser.post(f"{MOUNT}/session")).json()["token"]
        await connect_with_dev_consent(browser, token)
        left = time.monotonic()
        async with browser.stream("POST", "/chat", json={"message": "Say hello"}) as response:
            async for chunk in response.aiter_text():
                if "delta" in chunk:
                    break  # the browser tab closes after the first words
        record, rows = await settled(wf, user_id, 1)
        settled_after = time.monotonic() - left
    assert record.reserved == 0
    # The whole reply takes 1.2 s upstream; leaving stops it (and its billing) at once.
    assert settled_after < 0.8, settled_after
    generation = upstream.fake.ledger.records[-1]
    assert generation.cancelled and generation.completion_tokens < len(REPLY.split())
    assert rows[0].cost is not None and rows[0].cost < rows[0].reserved


async def test_reply_cut_off_at_the_cap_mid_stream_ends_with_a_budget_exceeded_event(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    upstream.fake.reply_text = " ".join(f"word{index}" for index in range(120))
    upstream.fake.inject(ignore_max_tokens=True)  # a provider that overruns the clamped max_tokens
    wf = new_embed(current_user)
    async with demo(wf) as browser:
        await sign_in(browser, user_id)
        token = (await browser.post(f"{MOUNT}/session")).json()["token"]
        await connect_with_dev_consent(browser, token, monthly_usd="0.00003")  # 30 µ$: a few dozen tokens
        events, _ = await chat_events(browser, "Tell me a long story")
        record, _ = await settled(wf, user_id, 1)
    deltas = [event for event in events if "delta" in event]
    assert 0 < len(deltas) < 120, "the reply was cut off part way"
    assert events[-2]["error"]["code"] == "budget_exceeded"  # type: ignore[index]
    assert events[-1] == {"done": True}
    assert record.reserved == 0 and record.spent <= micros_from_usd("0.00003")
