"""Settle exactly once: the upstream's figure when it gives one, else an estimate reconciled later."""

from __future__ import annotations

from decimal import Decimal

from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.waiting import poll

from .conftest import EMBEDDINGS, Proxied, error_of, sse_data, sse_events


async def test_reported_cost_is_charged_and_the_hold_released(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)

    streamed, _ = await proxy.stream_bytes(user_id, max_tokens=50)
    whole = await proxy.chat(user_id, max_tokens=50)

    assert streamed.status_code == whole.status_code == 200
    rows = await proxy.settled(user_id, 2)
    for row in rows:
        assert (row.state, row.cost_source, row.reconcile) == ("settled", "reported", False)
        assert row.cost == micros_from_usd(proxy.generation(row.generation_id).total_cost)
    record = await proxy.connection(user_id)
    assert record.spent == sum(row.cost or 0 for row in rows) > 0
    assert record.reserved == 0


async def test_stream_without_usage_is_charged_an_estimate_then_reconciled(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.fake.inject(no_usage=True)

    _, raw = await proxy.stream_bytes(user_id, max_tokens=50)

    assert not any("usage" in event for event in sse_events(raw))
    assert sse_data(raw)[-1] == "[DONE]"
    [row] = await proxy.ledger(user_id)
    # Settled as the response ended (and read after this process's settle): an estimate, to reconcile.
    assert (row.state, row.cost_source, row.reconcile) == ("settled", "estimated", True)
    assert row.cost is not None and row.cost > 0
    assert (await proxy.connection(user_id)).spent == row.cost

    [row] = await proxy.settled(user_id, 1, reconciled=True)

    charged = micros_from_usd(proxy.generation(row.generation_id).total_cost)
    assert (row.cost_source, row.cost) == ("reported", charged)
    assert (await proxy.connection(user_id)).spent == charged


async def test_body_without_usage_is_charged_an_estimate_then_reconciled(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.fake.inject(no_usage=True)

    response = await proxy.chat(user_id, max_tokens=50)

    assert response.status_code == 200 and "usage" not in response.json()
    [row] = await proxy.ledger(user_id)
    assert (row.cost_source, row.reconcile) == ("estimated", True)
    [row] = await proxy.settled(user_id, 1, reconciled=True)
    assert row.cost == micros_from_usd(proxy.generation(response.json()["id"]).total_cost)
    assert (await proxy.connection(user_id)).spent == row.cost


async def test_reconciliation_waits_for_a_generation_record_that_is_not_there_yet(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.generation_404_polls = 3
    lite.fake.inject(no_usage=True)
    lite_lookups = len(lite.upstream_calls("/api/v1/generation"))

    await lite.chat(user_id, max_tokens=50)
    [row] = await lite.settled(user_id, 1, reconciled=True)

    assert row.cost_source == "reported"
    # It asked again after each of the three 404s (the background task and the sweep both ask).
    lookups = lite.upstream_calls("/api/v1/generation")[lite_lookups:]
    assert len(lookups) >= 4
    assert {call.query for call in lookups} == {f"id={row.generation_id}"}
    assert row.cost == micros_from_usd(lite.generation(row.generation_id).total_cost)


async def test_zero_reported_cost_on_a_priced_model_is_unknown_not_free(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.inject(cost_override=Decimal(0))

    await lite.chat(user_id, max_tokens=50)

    [row] = await lite.ledger(user_id)
    assert (row.cost_source, row.reconcile) == ("estimated", True)
    assert row.cost is not None and row.cost > 0


async def test_mid_stream_error_is_forwarded_untouched_and_settled(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.fake.reply_text = "one two three four five six"
    proxy.fake.inject(mid_stream_error_after=3, mid_stream_error_code=429)
    proxy.fake.inject(mid_stream_error_after=2, mid_stream_error_code="server_error")

    _, int_raw = await proxy.stream_bytes(user_id, max_tokens=50)
    _, str_raw = await proxy.stream_bytes(user_id, max_tokens=50)

    for raw, code in ((int_raw, 429), (str_raw, "server_error")):
        assert raw == proxy.recorder.bodies()[0 if code == 429 else 1]  # no event of ours added
        last = sse_events(raw)[-1]
        assert last["error"]["code"] == code
        assert last["choices"][0]["finish_reason"] == "error"
    rows = await proxy.settled(user_id, 2, reconciled=True)
    for row in rows:
        # The upstream does not bill a generation that failed (Zero Completion Insurance).
        assert (row.state, row.cost_source, row.cost) == ("settled", "reported", 0)
        assert proxy.generation(row.generation_id).total_cost == 0
    assert (await proxy.connection(user_id)).spent == 0


async def test_upstream_dropping_the_stream_ends_it_with_an_upstream_error(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.fake.reply_text = "one two three four five six"
    proxy.fake.inject(drop_after=3)

    response, raw = await proxy.stream_bytes(user_id, max_tokens=50)

    assert response.status_code == 200
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    last = sse_events(raw)[-1]
    assert last["error"]["code"] == "upstream"
    assert set(last) == {"error"}
    assert sum(1 for event in sse_events(raw) if "error" in event) == 1
    [row] = await proxy.settled(user_id, 1, reconciled=True)
    assert row.cost == micros_from_usd(proxy.generation(row.generation_id).total_cost) > 0
    assert (await proxy.connection(user_id)).spent == row.cost


async def test_upstream_ending_the_stream_early_ends_it_with_an_upstream_error(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.reply_text = "one two three four five six"
    lite.fake.inject(drop_after=3, clean_eof=True)

    _, raw = await lite.stream_bytes(user_id, max_tokens=50)

    assert sse_data(raw)[-1] == "[DONE]"
    assert sse_events(raw)[-1]["error"]["code"] == "upstream"
    [row] = await lite.settled(user_id, 1, reconciled=True)
    assert row.cost == micros_from_usd(lite.generation(row.generation_id).total_cost)


async def test_upstream_dropping_a_body_is_an_upstream_error_and_is_reconciled(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.inject(drop_after=2)

    response = await lite.chat(user_id, max_tokens=50)

    assert error_of(response) == (502, "upstream")
    [row] = await lite.settled(user_id, 1, reconciled=True)
    # The upstream billed what it generated before the cut, so the row is not released.
    assert row.state == "settled"
    assert row.cost == micros_from_usd(lite.generation(row.generation_id).total_cost) > 0


async def test_embeddings_are_metered_like_completions(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)

    response = await proxy.http.post(
        "/api/v1/embeddings",
        json={"model": "openai/text-embedding-3-small", "input": ["one", "two"]},
        headers=proxy.headers(user_id),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2
    assert response.content == proxy.recorder.bodies(EMBEDDINGS)[-1]
    [call] = proxy.upstream_calls(EMBEDDINGS)
    assert call.headers["authorization"] == f"Bearer {proxy.users[user_id].secret}"
    [row] = await proxy.settled(user_id, 1)
    assert (row.kind, row.cost_source) == ("embeddings", "reported")
    assert row.cost == micros_from_usd(proxy.generation(body["id"]).total_cost)


async def test_every_request_of_a_mixed_run_is_charged_what_the_upstream_charged(proxy: Proxied, user_id: str) -> None:
    key = await proxy.connect(user_id, "5")
    fake = proxy.fake
    fake.reply_text = "alpha beta gamma delta epsilon zeta eta theta"

    await proxy.stream_bytes(user_id, max_tokens=50)
    await proxy.chat(user_id, max_tokens=50)
    fake.inject(no_usage=True)
    await proxy.stream_bytes(user_id, max_tokens=50)
    fake.inject(no_usage=True)
    await proxy.chat(user_id, max_tokens=50)
    fake.inject(mid_stream_error_after=2)
    await proxy.stream_bytes(user_id, max_tokens=50)
    fake.inject(drop_after=4)
    await proxy.stream_bytes(user_id, max_tokens=50)
    fake.inject(status=503)
    await proxy.chat(user_id, max_tokens=50)
    fake.inject(status=402, message="Insufficient credits")
    await proxy.stream_bytes(user_id, max_tokens=50)
    await proxy.http.post(
        "/api/v1/embeddings",
        json={"model": "openai/text-embedding-3-small", "input": "hello"},
        headers=proxy.headers(user_id),
    )
    fake.chunk_delay = 0.1
    async with proxy.stream(user_id, max_tokens=50) as response:  # the client leaves after two events
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data:")
            if seen == 3:
                break
    fake.chunk_delay = 0

    async def everything_cancelled_is_billed() -> bool | None:
        return True if len(fake.ledger.records) == 8 else None

    await poll(everything_cancelled_is_billed, what="the fake to bill the abandoned stream")
    rows = await proxy.settled(user_id, 10, reconciled=True)

    assert sorted(row.state for row in rows).count("released") == 2
    for row in rows:
        if row.state == "released":
            assert row.cost == 0
        else:
            assert row.cost == micros_from_usd(proxy.generation(row.generation_id).total_cost)
    ours = sum(row.cost or 0 for row in rows)
    upstream = micros_from_usd(fake.spend_by_key()[key.secret])
    assert abs(ours - upstream) <= len(rows)  # each charge rounds up to the micro-dollar on its own
    record = await proxy.connection(user_id)
    assert (record.spent, record.reserved) == (ours, 0)
