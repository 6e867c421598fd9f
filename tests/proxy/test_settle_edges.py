"""Edges of "settle exactly once": failed settles, cancelled reservations, sent-but-unanswered
requests, fallback lists, unpriced models, bad user encodings, and month boundaries."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from wattfare_embed import AppKeys
from wattfare_embed.store import NewConnection, ReservationRequest, SqlStore

from .conftest import Proxied, error_of, running_proxy

SONNET = "anthropic/claude-sonnet-4"


def _chat_call(lite: Proxied, user_id: str) -> tuple[dict[str, Any], Any, Any, list[Any]]:
    """A chat completion as the ASGI server hands it to the proxy: scope, receive and send, and
    the messages sent back."""
    body = json.dumps(lite.chat_body(max_tokens=20)).encode()
    headers = [(name.encode(), value.encode()) for name, value in lite.headers(user_id).items()]
    headers.append((b"content-type", b"application/json"))
    scope = {"type": "http", "method": "POST", "path": "/api/v1/chat/completions", "headers": headers}
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    return scope, receive, send, sent


async def test_a_settle_that_fails_is_retried_so_the_row_is_still_final(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    store = lite.wf.store
    real_settle = store.settle_reading_spend
    failures = []

    async def settle_failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(args)
            raise OSError("database is locked")
        return await real_settle(*args, **kwargs)

    store.settle_reading_spend = settle_failing_once  # type: ignore[method-assign]
    try:
        response = await lite.chat(user_id, max_tokens=20)
    finally:
        store.settle_reading_spend = real_settle  # type: ignore[method-assign]

    assert failures, "the first settle should have failed"
    assert response.status_code == 200, "the answer was paid for and still reaches the client"
    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost_source) == ("settled", "reported")


async def test_a_request_cancelled_while_reserving_releases_its_hold(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    store = lite.wf.store
    real_reserve = store.reserve
    reserving = asyncio.Event()

    async def slow_reserve(*args: Any, **kwargs: Any) -> Any:
        held = await real_reserve(*args, **kwargs)  # committed, as SQLite's writer thread does regardless
        reserving.set()
        await asyncio.sleep(0.5)
        return held

    store.reserve = slow_reserve  # type: ignore[method-assign]
    scope, receive, send, sent = _chat_call(lite, user_id)
    try:
        # The request's task is cancelled mid-reservation (the server stopping, say).
        request = asyncio.ensure_future(lite.wf.proxy.chat_completions(scope, receive, send))
        await reserving.wait()
        request.cancel()
        await asyncio.sleep(0)
        request.cancel()  # cancelled again while handling the first (as anyio cancel scopes do)
        await asyncio.gather(request, return_exceptions=True)
    finally:
        store.reserve = real_reserve  # type: ignore[method-assign]

    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost) == ("released", 0)
    assert lite.upstream_calls() == [] and sent == []


async def test_a_reservation_that_never_waits_runs_on_the_requests_own_task(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    store = lite.wf.store
    real_reserve = store.reserve
    reserved_on: list[asyncio.Task[Any] | None] = []

    async def noting_reserve(*args: Any, **kwargs: Any) -> Any:
        reserved_on.append(asyncio.current_task())
        return await real_reserve(*args, **kwargs)  # SQLite's transaction runs inline: no wait

    store.reserve = noting_reserve  # type: ignore[method-assign]
    scope, receive, send, sent = _chat_call(lite, user_id)
    try:
        request = asyncio.ensure_future(lite.wf.proxy.chat_completions(scope, receive, send))
        await request
    finally:
        store.reserve = real_reserve  # type: ignore[method-assign]

    assert reserved_on == [request], "no task of its own, no shield, no turn of the event loop"
    assert sent[0]["status"] == 200
    [row] = await lite.settled(user_id, 1)
    assert row.state == "settled"


async def test_a_request_sent_but_never_answered_is_charged_its_hold(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    async with running_proxy(keys, sqlite_url, upstream_timeout_seconds=0.3) as proxied:
        await proxied.connect(user_id)
        proxied.fake.inject(slow=1.0)  # the upstream takes longer than the embed waits

        response = await proxied.chat(user_id, max_tokens=20)

        assert error_of(response) == (502, "upstream")
        [row] = await proxied.settled(user_id, 1)
        # It was sent, so the upstream may bill it; with no generation id there is nothing to ask.
        assert (row.state, row.cost_source) == ("settled", "estimated")
        assert row.cost == row.reserved > 0


async def test_a_fallback_list_is_priced_at_its_dearest_model(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd="0.01")

    await lite.chat(user_id, max_tokens=100_000)
    await lite.chat(user_id, max_tokens=100_000, models=[SONNET])

    cheap, fallback = (call.json["max_tokens"] for call in lite.upstream_calls())
    # Sonnet's output costs 25x gpt-4o-mini's: the same budget affords far fewer tokens.
    assert fallback * 10 < cheap
    assert error_of(await lite.chat(user_id, models=["no/such-model"])) == (400, "invalid_request")
    assert error_of(await lite.chat(user_id, models="openai/gpt-4o-mini")) == (400, "invalid_request")


async def test_an_allowed_unpriced_model_is_metered_at_the_highest_listed_price(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    async with running_proxy(keys, sqlite_url, allow_unpriced_models=True) as proxied:
        await proxied.connect(user_id, monthly_usd="0.01")

        response = await proxied.chat(user_id, model="openrouter/auto")

        assert response.status_code == 200
        [call] = proxied.upstream_calls()
        # Bounded by the dearest listed completion price, never the model's whole output limit.
        assert 0 < call.json["max_tokens"] < 1000
        [row] = await proxied.settled(user_id, 1)
        assert row.cost_source == "reported" and row.cost is not None and row.cost <= row.reserved


async def test_a_user_id_that_is_not_valid_percent_encoding_is_a_bad_request(lite: Proxied, user_id: str) -> None:
    headers = {**lite.headers("%ff%fe"), "x-wattfare-user-encoding": "percent"}
    response = await lite.http.post("/api/v1/chat/completions", json=lite.chat_body(), headers=headers)
    assert error_of(response) == (400, "invalid_request")


async def test_a_reconcile_after_the_month_turned_adjusts_the_month_it_was_charged_in(sqlite_url: str) -> None:
    store = SqlStore(sqlite_url)
    await store.open()
    try:
        january_end = int(datetime(2027, 1, 31, 23, 59, 50, tzinfo=UTC).timestamp())
        february = january_end + 20
        await store.save_connection(NewConnection("app", "u", "dev", 5_000_000, "v1.x"), january_end)
        held = await store.reserve(ReservationRequest("app", "u", 1_000_000, 1, "chat", "m"), january_end)
        assert not isinstance(held, str)
        # Reserved in January, cut in February and charged an estimate there, reconciled later.
        await store.settle(held.ledger_id, 1_000_000, "estimated", february, generation_id="gen-1", reconcile=True)
        assert await store.reconcile(held.ledger_id, 200_000, february + 5)
        record = await store.get_connection("app", "u", february + 5)
        assert record is not None and record.spent == 200_000 and record.reserved == 0
    finally:
        await store.close()


async def test_a_user_id_with_control_characters_is_a_bad_request(lite: Proxied) -> None:
    # HTTP itself refuses control characters in headers; percent-encoded they would get through.
    headers = {**lite.headers("ada%00"), "x-wattfare-user-encoding": "percent"}
    response = await lite.http.post("/api/v1/chat/completions", json=lite.chat_body(), headers=headers)
    assert error_of(response) == (400, "invalid_request")
    sessions = await lite.http.post(
        "/api/v1/sessions",
        json={"appUserId": "ada\u0000"},
        headers={"authorization": f"Bearer {lite.keys.secret_key}"},
    )
    assert error_of(sessions) == (400, "invalid_request")


async def test_a_request_cancelled_after_its_answer_still_settles_exactly_once(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    store = lite.wf.store
    real_settle = store.settle_reading_spend
    gate = asyncio.Event()

    async def held_settle(*args: Any, **kwargs: Any) -> Any:
        await asyncio.wait_for(gate.wait(), 10)
        return await real_settle(*args, **kwargs)

    store.settle_reading_spend = held_settle  # type: ignore[method-assign]
    scope, receive, send, sent = _chat_call(lite, user_id)
    answered = asyncio.Event()

    async def noting_send(message: Any) -> None:
        await send(message)
        if message["type"] == "http.response.body":
            answered.set()

    try:
        request = asyncio.ensure_future(lite.wf.proxy.chat_completions(scope, receive, noting_send))
        await asyncio.wait_for(answered.wait(), 10)
        # The answer is out, its settle held: the request's task is cancelled, and cancelled again
        # while it waits for the settle (as anyio cancel scopes do), so it ends before the settle.
        request.cancel()
        await asyncio.sleep(0)
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
        assert request.done()
        gate.set()
    finally:
        gate.set()
        store.settle_reading_spend = real_settle  # type: ignore[method-assign]

    assert sent[0]["status"] == 200
    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost_source) == ("settled", "reported")
    assert (await lite.connection(user_id)).spent == row.cost > 0
