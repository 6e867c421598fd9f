"""The fake OpenRouter speaks the real wire format (docs/reference openrouter-api.md), over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx2
import pytest

from wattfare_embed.pkce import new_verifier, s256_challenge
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import free_port, serve

KEY = "sk-or-v1-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MGMT = {"Authorization": "Bearer sk-or-mgmt-test"}
MINI_PROMPT, MINI_COMPLETION = Decimal("0.00000015"), Decimal("0.0000006")
decimal_json = partial(json.loads, parse_float=Decimal)


def chat(text: str = "hello world", model: str = "openai/gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def prompt_tokens(body: dict[str, Any]) -> int:
    return math.ceil(len(json.dumps(body["messages"])) / 4)


def mini_cost(body: dict[str, Any], completion_tokens: int) -> Decimal:
    return prompt_tokens(body) * MINI_PROMPT + completion_tokens * MINI_COMPLETION


@asynccontextmanager
async def live(fake: FakeOpenRouter) -> AsyncIterator[aiohttp.ClientSession]:
    """The fake under uvicorn in a background thread, and an aiohttp session pointed at it."""
    with serve(fake) as base_url:
        async with aiohttp.ClientSession(base_url) as http:
            yield http


def in_process(fake: FakeOpenRouter) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake), base_url="http://fake")


class Stream:
    """One SSE response as received: raw bytes, events with arrival times, and the parsed payloads."""

    def __init__(self) -> None:
        self.raw = b""
        self.events: list[tuple[float, str]] = []
        self.broken = False

    @property
    def payloads(self) -> list[Any]:
        return [
            "[DONE]" if event == "data: [DONE]" else decimal_json(event.removeprefix("data: "))
            for _, event in self.events
            if event.startswith("data: ")
        ]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [payload for payload in self.payloads if payload != "[DONE]"]

    @property
    def content_chunks(self) -> list[dict[str, Any]]:
        return [c for c in self.chunks if c["choices"] and c["choices"][0]["delta"].get("content")]


async def read_stream(response: aiohttp.ClientResponse, *, stop_after_content: int | None = None) -> Stream:
    """Split events as bytes arrive; CRLF and LF line ends are both legal SSE."""
    stream, buffer = Stream(), ""
    try:
        async for data in response.content.iter_any():
            stream.raw += data
            buffer = (buffer + data.decode()).replace("\r\n", "\n")
            while "\n\n" in buffer:
                event, buffer = buffer.split("\n\n", 1)
                stream.events.append((time.monotonic(), event))
                if stop_after_content is not None and len(stream.content_chunks) >= stop_after_content:
                    return stream
    except aiohttp.ClientPayloadError:
        stream.broken = True
    return stream


async def stream_chat(http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[aiohttp.ClientResponse, Stream]:
    async with http.post("/api/v1/chat/completions", json={**body, "stream": True}, headers=AUTH) as response:
        return response, await read_stream(response)


async def eventually(condition: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- models and pricing --------------------------------------------------------------------------


async def test_models_are_real_shaped_with_decimal_string_prices() -> None:
    async with in_process(FakeOpenRouter()) as client:
        models = {m["id"]: m for m in (await client.get("/api/v1/models")).json()["data"]}
    mini = models["openai/gpt-4o-mini"]
    assert mini["pricing"]["prompt"] == "0.00000015" and mini["pricing"]["completion"] == "0.0000006"
    assert mini["top_provider"]["max_completion_tokens"] == 16_384 and mini["context_length"] == 128_000
    assert models["anthropic/claude-sonnet-4"]["pricing"]["completion"] == "0.000015"
    assert models["meta-llama/llama-3.1-8b-instruct:free"]["pricing"]["prompt"] == "0"
    assert models["openrouter/auto"]["pricing"]["prompt"] == "-1"
    assert models["openai/text-embedding-3-small"]["pricing"]["prompt"] == "0.00000002"
    assert models["perplexity/sonar"]["pricing"]["request"] == "0.005"


@pytest.mark.parametrize(
    ("model", "served_as", "request_price", "prompt_price", "completion_price"),
    [
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini", "0", "0.00000015", "0.0000006"),
        ("perplexity/sonar", "perplexity/sonar", "0.005", "0.000001", "0.000001"),
        ("meta-llama/llama-3.1-8b-instruct:free", "meta-llama/llama-3.1-8b-instruct:free", "0", "0", "0"),
        # A router is billed as the model it picked, which the response names.
        ("openrouter/auto", "openai/gpt-4o-mini", "0", "0.00000015", "0.0000006"),
    ],
)
async def test_cost_is_priced_from_the_catalog_with_decimal_arithmetic(
    model: str, served_as: str, request_price: str, prompt_price: str, completion_price: str
) -> None:
    fake = FakeOpenRouter()
    body = chat("price me", model=model)
    async with in_process(fake) as client:
        response = await client.post("/api/v1/chat/completions", json=body, headers=AUTH)
    answer = decimal_json(response.text)
    usage = answer["usage"]
    expected = (
        Decimal(request_price)
        + prompt_tokens(body) * Decimal(prompt_price)
        + usage["completion_tokens"] * Decimal(completion_price)
    )
    assert answer["model"] == served_as
    assert usage["prompt_tokens"] == prompt_tokens(body)
    assert usage["cost"] == expected
    assert fake.spend_by_key() == {KEY: expected}


async def test_tests_can_change_prices_through_the_models_list() -> None:
    fake = FakeOpenRouter(reply_text="one two")
    fake.models[0]["pricing"]["completion"] = "0.001"
    body = chat()
    async with in_process(fake) as client:
        usage = decimal_json((await client.post("/api/v1/chat/completions", json=body, headers=AUTH)).text)["usage"]
    assert usage["cost"] == prompt_tokens(body) * MINI_PROMPT + 2 * Decimal("0.001")


# --- chat completions ------------------------------------------------------------------------------


async def test_non_streaming_reply_echoes_the_user_and_carries_usage_cost_and_generation_id() -> None:
    fake = FakeOpenRouter()
    body = chat("hello world")
    async with in_process(fake) as client:
        response = await client.post("/api/v1/chat/completions", json=body, headers=AUTH)
    answer = decimal_json(response.text)
    assert response.status_code == 200
    assert answer["id"].startswith("gen-") and response.headers["x-generation-id"] == answer["id"]
    assert answer["object"] == "chat.completion"
    choice = answer["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Simulated reply: hello world",
        "refusal": None,
        "reasoning": None,
    }
    assert choice["finish_reason"] == "stop" and choice["native_finish_reason"] == "stop"
    # Token-sized pieces of at most four characters: "Simu" "late" "d" " rep" "ly:" " hel" "lo" " wor" "ld".
    assert answer["usage"]["completion_tokens"] == 9
    assert answer["usage"]["cost"] == mini_cost(body, 9)


async def test_stream_framing_is_comment_role_words_finish_usage_then_done() -> None:
    fake = FakeOpenRouter(reply_text="Hello there, friend")
    async with live(fake) as http:
        response, stream = await stream_chat(http, chat())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert stream.raw.startswith(b": OPENROUTER PROCESSING\r\n\r\ndata: ")
    chunks = stream.chunks
    generation_id = response.headers["x-generation-id"]
    for chunk in chunks:
        assert chunk["id"] == generation_id and chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "openai/gpt-4o-mini" and chunk["provider"] == "OpenAI"
        assert isinstance(chunk["created"], int)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in stream.content_chunks]
    assert pieces == ["Hell", "o", " the", "re,", " fri", "end"]
    finish, usage_chunk = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["native_finish_reason"] == "stop"
    assert "usage" not in finish
    # The usage chunk comes after the finish_reason chunk, with `choices: []` by default.
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 6
    assert stream.payloads[-1] == "[DONE]"
    assert stream.raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("set_by", ["constructor", "fault"])
async def test_usage_chunk_can_come_with_choices_and_an_empty_delta(set_by: str) -> None:
    if set_by == "constructor":
        fake = FakeOpenRouter(reply_text="a b", usage_shape="with_choices")
    else:
        fake = FakeOpenRouter(reply_text="a b")
        fake.inject(usage_shape="with_choices")
    async with live(fake) as http:
        _, stream = await stream_chat(http, chat())
    finish, usage_chunk = stream.chunks[-2], stream.chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert usage_chunk["choices"][0]["finish_reason"] is None
    assert usage_chunk["usage"]["cost"] == fake.total_spend()
    assert stream.payloads[-1] == "[DONE]"


async def test_chunks_are_sent_as_generated_not_buffered() -> None:
    fake = FakeOpenRouter(reply_text="one two six ten", chunk_delay=0.1)  # four one-token words
    async with live(fake) as http:
        _, stream = await stream_chat(http, chat())
    content_times = [at for at, event in stream.events if '"content":"' in event and '"content":""' not in event]
    assert len(content_times) == 4
    # Three pauses of 0.1 s between the four words: they arrive spread out, not in one burst.
    assert content_times[-1] - content_times[0] >= 0.25
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(content_times))


async def test_max_tokens_stops_early_with_finish_reason_length() -> None:
    fake = FakeOpenRouter(reply_text="one two three four five")
    body = chat(max_tokens=2)
    async with live(fake) as http:
        _, stream = await stream_chat(http, body)
    assert [c["choices"][0]["delta"]["content"] for c in stream.content_chunks] == ["one", " two"]
    assert stream.chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert stream.chunks[-1]["usage"]["completion_tokens"] == 2
    assert stream.chunks[-1]["usage"]["cost"] == mini_cost(body, 2)


async def test_max_completion_tokens_also_caps_a_non_streaming_reply() -> None:
    async with in_process(FakeOpenRouter(reply_text="one two three")) as client:
        answer = (
            await client.post("/api/v1/chat/completions", json=chat(max_completion_tokens=1), headers=AUTH)
        ).json()
    assert answer["choices"][0]["message"]["content"] == "one"
    assert answer["choices"][0]["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 1


async def test_client_disconnect_charges_only_emitted_tokens_and_marks_cancelled() -> None:
    words = 40
    fake = FakeOpenRouter(reply_text=" ".join(f"w{i}" for i in range(words)), chunk_delay=0.05)
    body = chat()
    async with live(fake) as http:
        response = await http.post("/api/v1/chat/completions", json={**body, "stream": True}, headers=AUTH)
        received = await read_stream(response, stop_after_content=3)
        response.close()  # the client walks away mid-stream
        await eventually(lambda: len(fake.ledger.records) == 1)
    [generation] = fake.ledger.records
    assert generation.cancelled and generation.streamed and generation.finish_reason is None
    assert len(received.content_chunks) <= generation.completion_tokens < words
    assert generation.total_cost == mini_cost(body, generation.completion_tokens)
    assert fake.spend_by_key()[KEY] == generation.total_cost


# --- faults ----------------------------------------------------------------------------------------


async def test_http_error_fault_answers_before_the_first_byte_with_its_headers() -> None:
    fake = FakeOpenRouter()
    fake.inject(status=429, message="Rate limit exceeded", headers={"Retry-After": "7"})
    async with live(fake) as http:
        async with http.post("/api/v1/chat/completions", json=chat(stream=True), headers=AUTH) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "7"
            assert await response.json() == {"error": {"code": 429, "message": "Rate limit exceeded"}}
        async with http.post("/api/v1/chat/completions", json=chat(), headers=AUTH) as response:
            assert response.status == 200
    assert len(fake.ledger.records) == 1  # the refused request generated nothing


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_error_fault_uses_openrouters_message_for_the_status(status: int) -> None:
    fake = FakeOpenRouter()
    fake.inject(status=status)
    async with in_process(fake) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == status
    assert response.json()["error"]["code"] == status and response.json()["error"]["message"]


async def test_fault_count_and_path_decide_which_requests_fail() -> None:
    fake = FakeOpenRouter()
    fake.inject(status=502, count=2)
    fake.inject(status=500, path="/api/v1/generation")
    async with in_process(fake) as client:
        statuses = [
            (await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)).status_code for _ in range(3)
        ]
        generation_status = (await client.get("/api/v1/generation?id=gen-x", headers=AUTH)).status_code
    assert statuses == [502, 502, 200]
    assert generation_status == 500
    assert fake.faults.pending() == []


@pytest.mark.parametrize(("code", "error_type"), [(502, "provider_unavailable"), ("server_error", None)])
async def test_mid_stream_error_ends_with_an_error_event_and_no_done(code: int | str, error_type: str | None) -> None:
    fake = FakeOpenRouter(reply_text="one two three four")
    fake.inject(mid_stream_error_after=2, mid_stream_error_code=code, message="Provider went away")
    async with live(fake) as http:
        response, stream = await stream_chat(http, chat())
    assert response.status == 200  # errors after the first byte keep the 200 (§4.3)
    assert len(stream.content_chunks) == 2
    last = stream.payloads[-1]
    assert last["error"]["code"] == code and last["error"]["message"] == "Provider went away"
    assert last["error"].get("metadata") == ({"error_type": error_type} if error_type else None)
    assert last["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    assert "[DONE]" not in stream.payloads and not any("usage" in c for c in stream.chunks)
    assert not stream.broken
    [generation] = fake.ledger.records
    # Zero Completion Insurance: a generation that ends in error costs nothing.
    assert generation.finish_reason == "error" and generation.total_cost == 0


async def test_mid_stream_error_on_a_non_streaming_request_is_a_200_with_an_error_choice() -> None:
    fake = FakeOpenRouter(reply_text="one two three")
    fake.inject(mid_stream_error_after=1, mid_stream_error_code=429, message="Rate limit exceeded")
    async with in_process(fake) as client:
        answer = (await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "error" and choice["message"]["content"] == "one"
    assert choice["error"] == {
        "code": 429,
        "message": "Rate limit exceeded",
        "metadata": {"error_type": "rate_limit_exceeded"},
    }


async def test_drop_cuts_the_connection_without_done_or_usage_and_bills_what_was_sent() -> None:
    fake = FakeOpenRouter(reply_text="one two three four")
    fake.inject(drop_after=2)
    body = chat()
    async with live(fake) as http:
        response, stream = await stream_chat(http, body)
        assert response.status == 200
    assert stream.broken  # the body never finished: the client sees a payload error
    assert len(stream.content_chunks) == 2
    assert "[DONE]" not in stream.payloads and not any("usage" in c for c in stream.chunks)
    [generation] = fake.ledger.records
    assert not generation.cancelled and generation.completion_tokens == 2
    assert generation.total_cost == mini_cost(body, 2)


async def test_drop_with_clean_eof_ends_the_body_early_without_an_error() -> None:
    fake = FakeOpenRouter(reply_text="one two three four")
    fake.inject(drop_after=1, clean_eof=True)
    async with live(fake) as http:
        _, stream = await stream_chat(http, chat())
    assert not stream.broken
    assert len(stream.content_chunks) == 1 and "[DONE]" not in stream.payloads


async def test_a_break_counted_past_the_last_word_happens_right_after_it() -> None:
    fake = FakeOpenRouter(reply_text="one two")
    fake.inject(drop_after=10, clean_eof=True)
    async with live(fake) as http:
        _, stream = await stream_chat(http, chat())
    assert len(stream.content_chunks) == 2
    assert not any(c["choices"] and c["choices"][0]["finish_reason"] for c in stream.chunks)
    assert "[DONE]" not in stream.payloads


async def test_no_usage_fault_streams_normally_but_sends_no_usage_chunk() -> None:
    fake = FakeOpenRouter(reply_text="one two")
    fake.inject(no_usage=True)
    async with live(fake) as http:
        _, stream = await stream_chat(http, chat())
    assert stream.chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in chunk for chunk in stream.chunks)
    assert stream.payloads[-1] == "[DONE]"
    assert fake.total_spend() > 0  # still billed; only the report is missing


async def test_slow_fault_paces_only_the_request_it_applies_to() -> None:
    fake = FakeOpenRouter(reply_text="one two three")
    fake.inject(slow=0.1)
    async with live(fake) as http:
        started = time.monotonic()
        await stream_chat(http, chat())
        slow_duration = time.monotonic() - started
        started = time.monotonic()
        await stream_chat(http, chat())
        fast_duration = time.monotonic() - started
    assert slow_duration >= 0.6  # a pause before each of the seven frames after the comment
    assert fast_duration < 0.3


async def test_cost_override_is_reported_and_charged() -> None:
    fake = FakeOpenRouter()
    fake.inject(cost_override=Decimal("0.0425"))
    async with live(fake) as http:
        _, stream = await stream_chat(http, chat())
    assert stream.chunks[-1]["usage"]["cost"] == Decimal("0.0425")
    assert fake.spend_by_key() == {KEY: Decimal("0.0425")}


def test_a_fault_refuses_contradictory_instructions() -> None:
    with pytest.raises(ValueError, match="at most one"):
        FakeOpenRouter().inject(status=500, drop_after=1)


# --- generation records ----------------------------------------------------------------------------


async def test_generation_record_answers_404_for_the_configured_polls_then_appears() -> None:
    fake = FakeOpenRouter(generation_404_polls=2)
    body = chat(user="tenant-7")
    async with in_process(fake) as client:
        generation_id = (await client.post("/api/v1/chat/completions", json=body, headers=AUTH)).json()["id"]
        polls = [await client.get(f"/api/v1/generation?id={generation_id}", headers=AUTH) for _ in range(3)]
        unknown = await client.get("/api/v1/generation?id=gen-never", headers=AUTH)
    assert [p.status_code for p in polls] == [404, 404, 200]
    assert polls[0].json()["error"]["code"] == 404
    record = decimal_json(polls[2].text)["data"]
    assert record["id"] == generation_id and record["model"] == "openai/gpt-4o-mini"
    assert record["total_cost"] == record["usage"] == mini_cost(body, 9)
    assert record["tokens_prompt"] == record["native_tokens_prompt"] == prompt_tokens(body)
    assert record["tokens_completion"] == record["native_tokens_completion"] == 9
    assert record["cancelled"] is False and record["streamed"] is False and record["finish_reason"] == "stop"
    assert record["external_user"] == "tenant-7" and record["created_at"]
    assert unknown.status_code == 404


# --- keys, limits, credits -------------------------------------------------------------------------


async def test_missing_and_unknown_credentials_get_openrouters_401s() -> None:
    fake = FakeOpenRouter(accept_unknown_keys=False)
    async with in_process(fake) as client:
        missing = await client.post("/api/v1/chat/completions", json=chat())
        unknown = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert missing.status_code == 401
    assert missing.json() == {"error": {"code": 401, "message": "No cookie auth credentials found"}}
    assert unknown.status_code == 401
    assert unknown.json() == {"error": {"code": 401, "message": "User not found."}}


async def test_unknown_model_is_a_400_naming_the_model() -> None:
    async with in_process(FakeOpenRouter()) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(model="acme/nope"), headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": 400, "message": "acme/nope is not a valid model ID"}}


async def test_preflight_402_when_the_worst_case_exceeds_the_key_headroom() -> None:
    fake = FakeOpenRouter()
    key = fake.keys.create(limit=Decimal("0.001"), limit_reset="monthly")
    headers = {"Authorization": f"Bearer {key.secret}"}
    body = chat()
    async with in_process(fake) as client:
        # No max_tokens: the model's 16384-token output budget is assumed, which the key cannot afford.
        refused = await client.post("/api/v1/chat/completions", json=body, headers=headers)
        allowed = await client.post("/api/v1/chat/completions", json=chat(max_tokens=10), headers=headers)
    affordable = int((Decimal("0.001") - prompt_tokens(body) * MINI_PROMPT) / MINI_COMPLETION)
    assert refused.status_code == 402
    assert refused.json()["error"] == {
        "code": 402,
        "message": "This request requires more credits, or fewer max_tokens. You requested up to 16384 tokens, "
        f"but can only afford {affordable}. To increase, visit https://openrouter.ai/settings/keys "
        "and create a key with a higher monthly limit",
    }
    assert allowed.status_code == 200


async def test_account_balance_is_checked_with_the_credits_wording() -> None:
    fake = FakeOpenRouter(account_credits=Decimal("0.002"))
    async with in_process(fake) as client:
        refused = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert refused.status_code == 402
    assert "https://openrouter.ai/settings/credits" in refused.json()["error"]["message"]


async def test_a_key_at_its_limit_gets_403_key_limit_exceeded() -> None:
    fake = FakeOpenRouter()
    key = fake.keys.create(limit=Decimal("1"), limit_reset="monthly")
    key.usage = Decimal("1")
    async with in_process(fake) as client:
        response = await client.post(
            "/api/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {key.secret}"}
        )
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": 403,
            "message": "Key limit exceeded (monthly limit). Manage it using https://openrouter.ai/settings/keys",
        }
    }


async def test_current_key_reports_limit_and_usage_as_json_numbers() -> None:
    fake = FakeOpenRouter()
    key = fake.keys.create(limit=Decimal("10"), limit_reset="monthly")
    key.usage = Decimal("2.5")
    async with in_process(fake) as client:
        data = (await client.get("/api/v1/key", headers={"Authorization": f"Bearer {key.secret}"})).json()["data"]
        mgmt = (await client.get("/api/v1/key", headers=MGMT)).json()["data"]
    assert data["limit"] == 10 and data["limit_remaining"] == 7.5 and data["limit_reset"] == "monthly"
    assert data["usage"] == data["usage_monthly"] == 2.5
    assert data["is_management_key"] is False and data["label"].startswith("sk-or-v1-")
    assert mgmt["is_management_key"] is True and mgmt["limit"] is None


async def test_management_api_creates_lists_gets_patches_and_deletes_keys() -> None:
    fake = FakeOpenRouter()
    async with in_process(fake) as client:
        created = await client.post(
            "/api/v1/keys", json={"name": "tenant-1", "limit": 5, "limit_reset": "monthly"}, headers=MGMT
        )
        assert created.status_code == 201
        secret, key = created.json()["key"], created.json()["data"]
        assert secret.startswith("sk-or-v1-") and key["hash"] == hashlib.sha256(secret.encode()).hexdigest()
        assert (key["name"], key["limit"], key["limit_remaining"], key["limit_reset"]) == ("tenant-1", 5, 5, "monthly")
        assert key["usage"] == 0 and key["disabled"] is False and key["created_at"] and secret not in key["label"]
        key_url = f"/api/v1/keys/{key['hash']}"
        inference = {"Authorization": f"Bearer {secret}"}

        listed = (await client.get("/api/v1/keys", headers=MGMT)).json()["data"]
        assert [k["hash"] for k in listed] == [key["hash"]]
        assert (await client.get(key_url, headers=MGMT)).json()["data"]["name"] == "tenant-1"

        patched = await client.patch(key_url, json={"limit": 7, "name": "renamed", "disabled": True}, headers=MGMT)
        assert patched.json()["data"]["limit"] == 7 and patched.json()["data"]["disabled"] is True
        assert (await client.get("/api/v1/keys", headers=MGMT)).json()["data"] == []  # disabled ones hidden
        assert (await client.post("/api/v1/chat/completions", json=chat(), headers=inference)).status_code == 401
        await client.patch(key_url, json={"disabled": False}, headers=MGMT)
        assert (await client.post("/api/v1/chat/completions", json=chat(), headers=inference)).status_code == 200

        deleted = await client.delete(key_url, headers=MGMT)
        assert deleted.json() == {"deleted": True}
        after = await client.post("/api/v1/chat/completions", json=chat(), headers=inference)
        assert after.status_code == 401 and after.json()["error"]["message"] == "User not found."
        assert (await client.get(key_url, headers=MGMT)).status_code == 404


async def test_management_endpoints_refuse_inference_keys_and_missing_auth() -> None:
    async with in_process(FakeOpenRouter()) as client:
        with_inference_key = await client.get("/api/v1/keys", headers=AUTH)
        without_auth = await client.post("/api/v1/keys", json={"name": "x"})
    assert with_inference_key.status_code == 401 and without_auth.status_code == 401


async def test_a_management_key_cannot_run_inference() -> None:
    async with in_process(FakeOpenRouter()) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=MGMT)
    assert response.status_code == 403


# --- embeddings ------------------------------------------------------------------------------------


async def test_embeddings_are_deterministic_and_charged_to_the_key() -> None:
    fake = FakeOpenRouter()
    body = {"model": "openai/text-embedding-3-small", "input": ["alpha", "beta"]}
    async with in_process(fake) as client:
        first = await client.post("/api/v1/embeddings", json=body, headers=AUTH)
        second = await client.post("/api/v1/embeddings", json=body, headers=AUTH)
    answer = decimal_json(first.text)
    vectors = [item["embedding"] for item in answer["data"]]
    assert [item["index"] for item in answer["data"]] == [0, 1] and vectors[0] != vectors[1]
    assert vectors == [item["embedding"] for item in decimal_json(second.text)["data"]]
    tokens = math.ceil(len(json.dumps(body["input"])) / 4)
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] == tokens
    assert answer["usage"]["cost"] == tokens * Decimal("0.00000002")
    assert first.headers["x-generation-id"] == answer["id"]
    assert fake.spend_by_key() == {KEY: 2 * tokens * Decimal("0.00000002")}


# --- requests log ----------------------------------------------------------------------------------


async def test_requests_log_keeps_forwarded_headers_and_the_parsed_body() -> None:
    fake = FakeOpenRouter()
    headers = {**AUTH, "HTTP-Referer": "https://app.example", "X-OpenRouter-Title": "Example App"}
    async with (
        live(fake) as http,
        http.post("/api/v1/chat/completions", json=chat(user="u-hash-1"), headers=headers) as response,
    ):
        await response.read()
    [received] = fake.requests
    assert received.method == "POST" and received.path == "/api/v1/chat/completions"
    assert received.headers["http-referer"] == "https://app.example"
    assert received.headers["x-openrouter-title"] == "Example App"
    assert received.json["user"] == "u-hash-1"


# --- OAuth PKCE ------------------------------------------------------------------------------------


def authorize_url(verifier: str, **extra: str) -> str:
    params = {
        "callback_url": "http://localhost:5173/callback?from=test",
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
        "state": "st-123",
        **extra,
    }
    return "/auth?" + "&".join(f"{name}={value}" for name, value in httpx2.QueryParams(params).multi_items())


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


async def test_oauth_pkce_happy_path_issues_a_working_key_with_the_configured_limit() -> None:
    fake = FakeOpenRouter(oauth_key_limit=Decimal("3"))
    verifier = new_verifier()
    async with in_process(fake) as client:
        redirect = await client.get(authorize_url(verifier))
        assert redirect.status_code == 302
        location = redirect.headers["location"]
        assert location.startswith("http://localhost:5173/callback?")
        callback = query_of(location)
        assert callback["state"] == "st-123" and callback["from"] == "test"
        exchange = await client.post(
            "/api/v1/auth/keys",
            json={"code": callback["code"], "code_verifier": verifier, "code_challenge_method": "S256"},
        )
        assert exchange.status_code == 200
        issued = exchange.json()
        assert issued["key"].startswith("sk-or-v1-") and issued["user_id"].startswith("user_")
        key_headers = {"Authorization": f"Bearer {issued['key']}"}
        current = (await client.get("/api/v1/key", headers=key_headers)).json()["data"]
        reply = await client.post("/api/v1/chat/completions", json=chat(max_tokens=50), headers=key_headers)
        # The key belongs to the user: the app's management key does not list it.
        managed = (await client.get("/api/v1/keys", headers=MGMT)).json()["data"]
    assert current["limit"] == 3
    assert reply.status_code == 200
    assert managed == []


async def test_oauth_refuses_a_wrong_verifier_and_a_reused_code() -> None:
    fake = FakeOpenRouter()
    verifier = new_verifier()
    async with in_process(fake) as client:
        code = query_of((await client.get(authorize_url(verifier))).headers["location"])["code"]
        wrong = await client.post("/api/v1/auth/keys", json={"code": code, "code_verifier": new_verifier()})
        right = await client.post("/api/v1/auth/keys", json={"code": code, "code_verifier": verifier})
        reused = await client.post("/api/v1/auth/keys", json={"code": code, "code_verifier": verifier})
    assert wrong.status_code == 403
    assert wrong.json() == {"error": {"code": 403, "message": "Invalid code or code_verifier"}}
    assert right.status_code == 200
    assert reused.status_code == 403 and reused.json()["error"]["message"] == "Invalid code or code_verifier"


async def test_oauth_code_expires_ten_minutes_after_issue() -> None:
    now = [1_800_000_000.0]
    fake = FakeOpenRouter(clock=lambda: now[0])
    verifier = new_verifier()
    async with in_process(fake) as client:
        code = query_of((await client.get(authorize_url(verifier))).headers["location"])["code"]
        now[0] += 601
        expired = await client.post("/api/v1/auth/keys", json={"code": code, "code_verifier": verifier})
    assert expired.status_code == 403
    assert expired.json() == {"error": {"code": 403, "message": "Authorization code expired"}}


async def test_oauth_rejects_an_unknown_challenge_method() -> None:
    async with in_process(FakeOpenRouter()) as client:
        response = await client.post(
            "/api/v1/auth/keys", json={"code": "x", "code_verifier": "y", "code_challenge_method": "S512"}
        )
    assert response.status_code == 400
    assert response.json() == {"error": {"code": 400, "message": "Invalid code_challenge_method"}}


async def test_oauth_refuses_a_plain_http_callback_off_localhost() -> None:
    async with in_process(FakeOpenRouter()) as client:
        response = await client.get(authorize_url(new_verifier(), callback_url="http://evil.example/cb"))
    assert response.status_code == 400 and response.json()["error"]["code"] == 400


async def test_oauth_page_lets_the_user_approve_or_deny() -> None:
    fake = FakeOpenRouter(oauth_auto_approve=False)
    verifier = new_verifier()
    async with in_process(fake) as client:
        page = await client.get(authorize_url(verifier, key_label="My App"))
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert 'action="/auth/decide"' in page.text and "Approve" in page.text and "Deny" in page.text
        form = {
            "callback_url": "http://localhost:5173/callback",
            "code_challenge": s256_challenge(verifier),
            "code_challenge_method": "S256",
            "state": "st-9",
            "key_label": "My App",
        }
        approved = await client.post("/auth/decide", data={**form, "decision": "approve"})
        denied = await client.post("/auth/decide", data={**form, "decision": "deny"})
        code = query_of(approved.headers["location"])["code"]
        exchange = await client.post("/api/v1/auth/keys", json={"code": code, "code_verifier": verifier})
    assert approved.status_code == 303 and query_of(approved.headers["location"])["state"] == "st-9"
    assert exchange.status_code == 200
    denial = query_of(denied.headers["location"])
    # The reference (§1.1): a denial comes back with `error`, and without `state`.
    assert denial["error"] == "access_denied" and "state" not in denial and "code" not in denial


# --- control endpoints and the CLI -----------------------------------------------------------------


async def test_control_endpoints_queue_faults_and_report_spend_and_requests() -> None:
    fake = FakeOpenRouter()
    async with live(fake) as http:
        async with http.post("/_fake/faults", json=[{"status": 503, "headers": {"Retry-After": "2"}}]) as r:
            assert r.status == 201
        async with http.post("/_fake/faults", json={"nonsense": 1}) as r:
            assert r.status == 400
        async with http.get("/_fake/faults") as r:
            assert [f["status"] for f in (await r.json())["faults"]] == [503]
        async with http.post("/api/v1/chat/completions", json=chat(), headers=AUTH) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "2"
        async with http.post("/_fake/faults", json={"status": 500, "count": 3}) as r:
            assert r.status == 201
        async with http.delete("/_fake/faults") as r:
            assert (await r.json())["faults"] == []
        async with http.post("/api/v1/chat/completions", json=chat(), headers=AUTH) as r:
            assert r.status == 200
        async with http.get("/_fake/spend") as r:
            spend = await r.json()
        async with http.get("/_fake/requests") as r:
            received = (await r.json())["requests"]
    assert spend == {"total": str(fake.total_spend()), "by_key": {KEY: str(fake.spend_by_key()[KEY])}}
    assert Decimal(spend["total"]) > 0
    # Control calls are not logged; both chat requests are, the failed one included.
    assert [entry["path"] for entry in received] == ["/api/v1/chat/completions"] * 2


async def test_cli_serves_the_fake_on_the_port_it_prints() -> None:
    cli_port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wattfare_embed.testing.fake_openrouter",
        "--port",
        str(cli_port),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=15)).decode().strip()
        assert line == f"fake OpenRouter on http://127.0.0.1:{cli_port}/api/v1"
        async with aiohttp.ClientSession() as http, http.get(line.split(" on ")[1] + "/models") as response:
            models = await response.json()
        assert response.status == 200
        assert "openai/gpt-4o-mini" in {model["id"] for model in models["data"]}
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)


# -- the dimensions beyond prompt and completion tokens ---------------------------------------------


async def test_reasoning_streams_in_both_fields_and_bills_at_internal_reasoning() -> None:
    fake = FakeOpenRouter(reply_text="Yes")
    fake.billing.reasoning_text = "Think hard now"
    async with live(fake) as http:
        _, stream = await stream_chat(http, chat(model="deepseek/deepseek-r1", reasoning={"effort": "low"}))
    deltas = [c["choices"][0]["delta"] for c in stream.chunks if c["choices"]]
    reasoning = [d for d in deltas if d.get("reasoning")]
    assert [d["reasoning"] for d in reasoning] == ["Thin", "k", " har", "d", " now"]
    assert all(
        d["reasoning_details"][0] == {"type": "reasoning.text", "text": d["reasoning"], "format": "unknown", "index": 0}
        for d in reasoning
    )
    usage = stream.chunks[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 5
    [generation] = fake.ledger.records
    prompt_cost = generation.prompt.cost(generation.prices)
    assert generation.total_cost == prompt_cost + 5 * Decimal("0.000004") + 1 * Decimal("0.000002")


async def test_images_are_billed_per_image_or_as_tokens_as_the_model_lists() -> None:
    fake = FakeOpenRouter(reply_text="ok")
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, image, image]}]}
    async with in_process(fake) as client:
        await client.post("/api/v1/chat/completions", json={"model": "openai/gpt-4o-mini", **body}, headers=AUTH)
        await client.post("/api/v1/chat/completions", json={"model": "google/gemini-2.5-flash", **body}, headers=AUTH)
    per_image, as_tokens = fake.ledger.records
    assert (per_image.prompt.images, per_image.prompt.image_tokens) == (2, 0)
    assert (as_tokens.prompt.images, as_tokens.prompt.image_tokens) == (0, 2 * fake.billing.image_tokens)
    assert per_image.total_cost > 2 * Decimal("0.007225")


async def test_byok_usage_reports_the_fee_as_cost_and_the_providers_bill_apart() -> None:
    fake = FakeOpenRouter(reply_text="ok")
    fake.billing.byok = True
    async with in_process(fake) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
        generation_id = response.json()["id"]
        fake.generation_404_polls = 0
        answer = await client.get("/api/v1/generation", params={"id": generation_id}, headers=AUTH)
        record = decimal_json(answer.text)["data"]
    usage = decimal_json(response.text)["usage"]
    [generation] = fake.ledger.records
    assert usage["is_byok"] is True and record["is_byok"] is True
    upstream = usage["cost_details"]["upstream_inference_cost"]
    assert upstream == record["upstream_inference_cost"] == generation.upstream_cost > 0
    assert usage["cost"] == record["total_cost"] == generation.upstream_cost * Decimal("0.05")
    assert fake.total_spend() == generation.upstream_cost * Decimal("1.05")


async def test_max_price_excludes_dearer_providers_and_refuses_when_none_is_left() -> None:
    fake = FakeOpenRouter(reply_text="ok")
    fake.add_provider("openai/gpt-4o-mini", "Pricey", completion="0.0000012")
    fake.route_to_dearest = True
    async with in_process(fake) as client:
        unpinned = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
        pinned = await client.post(
            "/api/v1/chat/completions",
            json=chat(provider={"max_price": {"prompt": 0.15, "completion": 0.6}}),
            headers=AUTH,
        )
        refused = await client.post(
            "/api/v1/chat/completions", json=chat(provider={"max_price": {"completion": 0.1}}), headers=AUTH
        )
    assert unpinned.json()["provider"] == "Pricey" and pinned.json()["provider"] == "OpenAI"
    assert refused.status_code == 404 and "max_price" in refused.json()["error"]["message"]
    assert len(fake.ledger.records) == 2
