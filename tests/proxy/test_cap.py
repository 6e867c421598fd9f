"""The cap holds: under concurrency, and mid-stream when the running estimate passes the reservation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.fake_openrouter import Generation
from wattfare_embed.testing.waiting import poll

from .conftest import HELLO, SONNET, Proxied, error_of, estimate_prompt_tokens, sse_data, sse_events

CUT_OFF_EVENT_KEYS = {"error"}  # bare: every client surfaces it (tests/clients/)
OVERRUN_REPLY = " ".join(f"w{i}" for i in range(60))  # sixty pieces of at most four characters: one token each


async def test_concurrent_requests_never_pass_the_cap(proxy: Proxied, user_id: str) -> None:
    key = await proxy.connect(user_id, "0.005")  # 5 000 µ$
    # 30 words: each request outputs its whole max_tokens (20 tokens of Sonnet: 300 µ$ and the prompt).
    proxy.fake.reply_text = " ".join(f"w{i}" for i in range(30))
    proxy.fake.chunk_delay = 0.005

    async def one(index: int) -> tuple[int, str]:
        if index % 2:
            response, raw = await proxy.stream_bytes(user_id, model=SONNET, max_tokens=20)
            if response.status_code == 200:
                assert sse_data(raw)[-1] == "[DONE]"
                return 200, "ok"
            return response.status_code, json.loads(raw)["error"]["code"]
        response = await proxy.chat(user_id, model=SONNET, max_tokens=20)
        return (200, "ok") if response.status_code == 200 else error_of(response)

    outcomes = await asyncio.gather(*(one(index) for index in range(40)))

    assert set(outcomes) <= {(200, "ok"), (402, "budget_exceeded")}, outcomes
    admitted = outcomes.count((200, "ok"))
    assert 0 < admitted < 40  # some got through, the cap stopped the rest
    rows = await proxy.settled(user_id, admitted)
    record = await proxy.connection(user_id)
    assert record.spent <= record.monthly_cap  # with clamping the one-chunk error is zero here
    assert record.spent == sum(row.cost or 0 for row in rows)
    assert all(row.cost_source == "reported" for row in rows)
    upstream = micros_from_usd(proxy.fake.spend_by_key()[key.secret])
    assert abs(record.spent - upstream) <= admitted
    assert len(proxy.upstream_calls()) == admitted  # a refused request never reached the upstream


async def test_stream_crossing_its_reservation_is_cut_off_with_one_error_event(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id, "1")
    # A provider that overruns max_tokens: sixty one-token pieces for a 20-token hold.
    proxy.fake.reply_text = OVERRUN_REPLY
    proxy.fake.chunk_delay = 0.02
    proxy.fake.inject(ignore_max_tokens=True)
    hold = estimate_prompt_tokens({"messages": HELLO}) * 3 + 20 * 15

    response, raw = await proxy.stream_bytes(user_id, model=SONNET, max_tokens=20)

    assert response.status_code == 200
    data = sse_data(raw)
    events = sse_events(raw)
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1
    cut = events[-1]
    assert set(cut) == CUT_OFF_EVENT_KEYS
    assert cut["error"]["code"] == "budget_exceeded" and cut["error"]["message"]
    assert sum(1 for event in events if "error" in event) == 1
    # Cut at the chunk that passed the hold: the 20 tokens paid for, and the one chunk that crossed.
    assert len(_content_pieces(events)) == 21
    # The upstream connection was closed: the fake saw its client go and billed only what it sent.
    generation = await poll(lambda: _cancelled(proxy, events[0]["id"]), what="the fake to see the cancelled stream")
    assert generation.completion_tokens < 30
    [row] = await proxy.ledger(user_id)
    assert (row.cost_source, row.reconcile, row.reserved) == ("estimated", True, hold)
    assert row.cost == hold  # never more than was held
    [row] = await proxy.settled(user_id, 1, reconciled=True)
    assert row.cost == micros_from_usd(generation.total_cost)
    assert (await proxy.connection(user_id)).spent == row.cost


async def test_a_burst_of_events_in_one_read_is_cut_at_the_event_that_passed_the_hold(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id, "1")
    lite.fake.reply_text = OVERRUN_REPLY
    lite.fake.chunk_delay = 0  # back to back: many events, and even the usage, arrive in one read
    lite.fake.inject(ignore_max_tokens=True)

    _, raw = await lite.stream_bytes(user_id, model=SONNET, max_tokens=20)

    events = sse_events(raw)
    assert len(_content_pieces(events)) == 21
    assert events[-1]["error"]["code"] == "budget_exceeded"
    assert not any("usage" in event for event in events)
    assert sse_data(raw)[-1] == "[DONE]"
    # Everything before our event is the upstream's own bytes, whole events only.
    ours = raw.rindex(b"data: {")
    assert lite.recorder.bodies()[-1].startswith(raw[:ours])
    assert raw[:ours].endswith(b"\n\n")
    await lite.settled(user_id, 1, reconciled=True)


async def test_concurrent_overrunning_streams_stop_within_one_event_of_their_holds(
    proxy: Proxied, user_id: str
) -> None:
    key = await proxy.connect(user_id, "0.003")  # 3 000 µ$: about eight 20-token Sonnet holds at a time
    proxy.fake.reply_text = OVERRUN_REPLY
    proxy.fake.chunk_delay = 0.005
    proxy.fake.inject(ignore_max_tokens=True, count=24)
    prompt_cost = estimate_prompt_tokens({"messages": HELLO}) * 3

    async def one() -> tuple[int, list[dict[str, Any]]]:
        response, raw = await proxy.stream_bytes(user_id, model=SONNET, max_tokens=20)
        return response.status_code, sse_events(raw) if response.status_code == 200 else [json.loads(raw)]

    outcomes = await asyncio.gather(*(one() for _ in range(24)))

    streamed = [events for status, events in outcomes if status == 200]
    refused = [events for status, events in outcomes if status != 200]
    assert streamed and refused
    assert all(events[0]["error"]["code"] == "budget_exceeded" for events in refused)
    rows = await proxy.settled(user_id, len(streamed), reconciled=True)
    hold_of = {row.generation_id: row.reserved for row in rows}
    for events in streamed:
        assert events[-1]["error"]["code"] == "budget_exceeded"
        # Each stream delivered exactly the tokens its hold paid for, plus the one chunk that crossed it.
        assert len(_content_pieces(events)) == (hold_of[events[0]["id"]] - prompt_cost) // 15 + 1
    record = await proxy.connection(user_id)
    assert record.spent == sum(row.cost or 0 for row in rows)
    assert record.spent <= record.monthly_cap
    assert abs(record.spent - micros_from_usd(proxy.fake.spend_by_key()[key.secret])) <= len(rows)


def _content_pieces(events: list[dict[str, Any]]) -> list[str]:
    return [c["delta"]["content"] for event in events for c in event.get("choices", []) if c["delta"].get("content")]


async def _cancelled(proxy: Proxied, generation_id: str) -> Generation | None:
    found = [record for record in proxy.fake.ledger.records if record.id == generation_id and record.cancelled]
    return found[0] if found else None


async def test_a_stream_overrunning_with_reasoning_is_cut_off_too(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "1")
    lite.fake.billing.reasoning_text = OVERRUN_REPLY  # sixty one-token pieces of reasoning
    lite.fake.inject(ignore_max_tokens=True)

    _, raw = await lite.stream_bytes(user_id, model="deepseek/deepseek-r1", max_tokens=20, reasoning={"effort": "low"})

    events = sse_events(raw)
    reasoning = [c["delta"]["reasoning"] for e in events for c in e.get("choices", []) if c["delta"].get("reasoning")]
    assert len(reasoning) == 21  # the 20 tokens paid for, and the one event that crossed the hold
    assert events[-1]["error"]["code"] == "budget_exceeded"
    assert sse_data(raw)[-1] == "[DONE]"
    await lite.settled(user_id, 1, reconciled=True)


async def test_a_stream_overrunning_with_images_is_cut_off_too(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "1")
    lite.fake.reply_text = "Here you go"
    lite.fake.billing.output_images = 5
    lite.fake.billing.output_image_tokens = 100
    lite.fake.billing.output_image_bytes = 200_000  # the size the meter counts as 100 tokens
    lite.fake.inject(ignore_max_tokens=True)

    _, raw = await lite.stream_bytes(
        user_id, model="google/gemini-2.5-flash-image", modalities=["image", "text"], max_tokens=150
    )

    events = sse_events(raw)
    images = [i for e in events for c in e.get("choices", []) for i in c["delta"].get("images", [])]
    assert len(images) == 2  # one image fits 150 tokens; the second crossed the hold and was the last
    assert events[-1]["error"]["code"] == "budget_exceeded"
    await lite.settled(user_id, 1, reconciled=True)
