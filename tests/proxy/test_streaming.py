"""Happy paths: what the upstream sends reaches the client untouched, as it is sent, and is charged."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from wattfare_embed.money import micros_from_usd

from .conftest import MINI, Proxied, sse_data, sse_events


async def test_non_streaming_reply_is_relayed_byte_for_byte(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    response = await lite.chat(user_id, max_tokens=50)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == lite.recorder.bodies()[-1]
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Simulated reply: Say hello"
    assert response.headers["x-generation-id"] == body["id"]
    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost_source, row.generation_id) == ("settled", "reported", body["id"])
    assert row.cost == micros_from_usd(lite.generation(body["id"]).total_cost)


async def test_streamed_bytes_are_identical_to_what_the_upstream_sent(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    response, raw = await lite.stream_bytes(user_id, max_tokens=50)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert raw == lite.recorder.bodies()[-1]
    # The upstream's keep-alive comment, with its CRLF frame, is passed through too.
    assert raw.startswith(b": OPENROUTER PROCESSING\r\n\r\n")
    assert sse_data(raw)[-1] == "[DONE]"
    text = "".join(choice["delta"].get("content") or "" for event in sse_events(raw) for choice in event["choices"])
    assert text == "Simulated reply: Say hello"


async def test_openai_sdk_streams_through_the_proxy(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.fake.reply_text = "The quick brown fox jumps over the lazy dog"

    async with proxy.openai(user_id) as client:
        stream = await client.chat.completions.create(
            model=MINI, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        pieces = []
        usage = None
        async for chunk in stream:
            pieces.extend(choice.delta.content or "" for choice in chunk.choices)
            usage = chunk.usage or usage

    assert "".join(pieces) == "The quick brown fox jumps over the lazy dog"
    [row] = await proxy.settled(user_id, 1)
    assert usage is not None and usage.completion_tokens == proxy.generation(row.generation_id).completion_tokens
    assert row.cost_source == "reported"
    assert row.cost == micros_from_usd(proxy.generation(row.generation_id).total_cost)
    assert (await proxy.connection(user_id)).spent == row.cost


async def test_openai_sdk_non_streaming_call(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    async with lite.openai(user_id) as client:
        completion = await client.chat.completions.create(model=MINI, messages=[{"role": "user", "content": "hi"}])

    assert completion.choices[0].message.content == "Simulated reply: hi"
    assert completion.usage is not None
    [row] = await lite.settled(user_id, 1)
    assert row.cost == micros_from_usd(lite.generation(completion.id).total_cost)


async def test_chunks_arrive_as_the_upstream_sends_them(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.reply_text = "one two six ten red fox"  # one token-sized piece a word
    lite.fake.chunk_delay = 0.08

    arrivals: list[float] = []
    async with lite.stream(user_id, max_tokens=50) as response:
        async for _line in response.aiter_lines():
            if _line.startswith("data:"):
                arrivals.append(time.monotonic())

    # role chunk, six words, finish chunk, usage chunk, [DONE]: ten events, a pause before each.
    assert len(arrivals) == 10
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Nothing is held back and released in a burst: every event arrives about one pause after the last.
    assert sum(gap > 0.04 for gap in gaps) >= len(gaps) - 1, gaps
    assert arrivals[-1] - arrivals[0] >= 0.8 * 0.08 * len(gaps)


@pytest.mark.parametrize("usage_shape", ["empty_choices", "with_choices"])
async def test_usage_is_read_in_either_shape_after_the_finish_reason(
    proxy: Proxied, user_id: str, usage_shape: str
) -> None:
    await proxy.connect(user_id)
    proxy.fake.usage_shape = usage_shape  # type: ignore[assignment]

    _, raw = await proxy.stream_bytes(user_id, max_tokens=50)

    events = sse_events(raw)
    finish = next(i for i, event in enumerate(events) if any(c.get("finish_reason") for c in event["choices"]))
    with_usage = next(i for i, event in enumerate(events) if event.get("usage"))
    assert with_usage > finish  # the usage chunk comes after the finish_reason chunk
    assert (events[with_usage]["choices"] == []) == (usage_shape == "empty_choices")
    [row] = await proxy.settled(user_id, 1)
    assert row.cost_source == "reported"
    assert row.cost == micros_from_usd(json.dumps(events[with_usage]["usage"]["cost"]))
    assert row.cost == micros_from_usd(proxy.generation(row.generation_id).total_cost)
