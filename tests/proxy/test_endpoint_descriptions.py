"""Each endpoint's description on its own: what its requests must hold, their billable parts, where the
output limit is clamped, how the meter reads its streams (the fake's real bytes, split anywhere), and
the cut-off and error events, which the real SDKs must raise as our typed errors."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from wattfare_embed import BudgetExceededError, NotConnectedError, UpstreamError, to_wattfare_error
from wattfare_embed.errors import InvalidRequestError, WattfareError
from wattfare_embed.metering.dialects import CHAT, COMPLETIONS, MESSAGES, RESPONSES, Dialect
from wattfare_embed.metering.estimate import plan_admission
from wattfare_embed.metering.meter import ResponseMeter, TokenPrices
from wattfare_embed.metering.model_price import ModelPrice
from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing._fake_reply import word_pieces
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter

from .media_samples import data_url, pdf

PRICE = ModelPrice("m", prompt=Decimal("3"), completion=Decimal("15"), request=Decimal(0), max_completion_tokens=8192)
PNG = data_url("image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))
PDF3 = pdf(3)
REPLY = "one two three four five six seven"


def _refused(dialect: Dialect, payload: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequestError) as refused:
        dialect.check(payload)
    return refused.value.message


# -- what a request must hold ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"store": True}, "`store: true`"),
        ({"previous_response_id": "resp_1"}, "`previous_response_id`"),
        ({"conversation": "conv_1"}, "`conversation`"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0] refers to a stored item"),
    ],
)
def test_stateful_responses_requests_are_refused_saying_the_api_is_stateless(extra: dict[str, Any], names: str) -> None:
    message = _refused(RESPONSES, {"model": "m", "input": "hi", **extra})
    assert names in message and "stateless" in message


def test_a_response_with_store_false_passes() -> None:
    RESPONSES.check({"model": "m", "input": [{"role": "user", "content": "hi"}], "store": False, "stream": True})


@pytest.mark.parametrize(
    ("dialect", "payload", "names"),
    [
        (RESPONSES, {"input": ""}, "`input`"),
        (RESPONSES, {"input": "hi", "max_output_tokens": 0}, "`max_output_tokens`"),
        (RESPONSES, {"input": "hi", "reasoning": {"max_tokens": "lots"}}, "`reasoning.max_tokens`"),
        (RESPONSES, {"input": "hi", "stream": "yes"}, "`stream`"),
        (MESSAGES, {"messages": []}, "`messages`"),
        (MESSAGES, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, "`max_tokens`"),
        (MESSAGES, {"messages": [{"role": "user", "content": "hi"}], "thinking": {"budget_tokens": 1.5}}, "budget"),
        (COMPLETIONS, {"prompt": ["a", 3]}, "`prompt`"),
        (COMPLETIONS, {"prompt": "a", "best_of": True}, "`best_of`"),
    ],
)
def test_unreadable_requests_are_refused_naming_the_field(
    dialect: Dialect, payload: dict[str, Any], names: str
) -> None:
    assert names in _refused(dialect, {"model": "m", **payload})


# -- billable parts -------------------------------------------------------------------------


def test_a_responses_request_names_its_media_by_where_they_sit_in_input() -> None:
    payload = {
        "model": "m",
        "instructions": "Be brief",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in these?"},
                    {"type": "input_image", "image_url": PNG},
                    {"type": "input_file", "filename": "a.pdf", "file_data": data_url("application/pdf", PDF3)},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [
                    {"type": "input_image", "image_url": "https://x/y.png"},
                    {"type": "input_file", "file_url": "https://x/z.pdf"},
                ],
            },
        ],
        "max_output_tokens": 300,
    }
    request = RESPONSES.read_request(payload)

    assert [(part.kind, part.where, part.by_url, part.sized) for part in request.media] == [
        ("image", "input[0].content[1]", False, True),
        ("file", "input[0].content[2]", False, True),
        ("image", "input[2].content[0]", True, True),  # an image is bounded by its price either way
        ("file", "input[2].content[1]", True, False),
    ]
    assert request.media[1].pages == 3 and request.completion_limit == 300 and request.messages == 4
    assert request.text_bytes < 500  # the payloads are not prompt text
    with pytest.raises(InvalidRequestError, match=r"input\[2\]\.content\[1\]: a file by URL"):
        plan_admission(request, PRICE)


@pytest.mark.parametrize(
    ("tools", "extra", "searches", "unbounded"),
    [
        ([{"type": "function", "name": "f", "parameters": {}}, {"type": "custom", "name": "g"}], {}, 0, None),
        ([{"type": "web_search_preview"}], {}, 0, "tools[0] (web_search_preview without the request's max_tool_calls)"),
        ([{"type": "web_search_preview", "search_context_size": "high"}], {"max_tool_calls": 2}, 2, None),
        ([{"type": "openrouter:web_search", "parameters": {"max_uses": 3}}], {}, 3, None),
        ([{"type": "code_interpreter"}], {}, 0, "tools[0] (server tool 'code_interpreter')"),
    ],
)
def test_responses_tools_bill_nothing_are_bounded_or_are_named(
    tools: list[Any], extra: dict[str, Any], searches: int, unbounded: str | None
) -> None:
    request = RESPONSES.read_request({"model": "m", "input": "hi", "tools": tools, **extra})
    assert sum(allowance.searches for allowance in request.searches) == searches
    assert request.unbounded == ((unbounded,) if unbounded else ())


def test_a_messages_request_finds_media_in_every_block_and_tool_result() -> None:
    b64 = base64.b64encode(PDF3).decode()
    payload = {
        "model": "m",
        "max_tokens": 500,
        "system": [{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
                    }
                ],
            },
        ],
    }
    request = MESSAGES.read_request(payload)

    assert [(part.kind, part.where, part.by_url, part.pages) for part in request.media] == [
        ("image", "messages[0].content[0]", False, None),
        ("file", "messages[0].content[1]", False, 3),
        ("image", "messages[2].content[0].content[0]", True, None),
    ]
    assert request.completion_limit == 500 and request.cache_write_1h and request.messages == 4


@pytest.mark.parametrize(
    ("tool", "searches", "unbounded"),
    [
        ({"name": "f", "input_schema": {"type": "object"}}, 0, None),
        ({"type": "bash_20250124", "name": "bash"}, 0, None),
        ({"type": "text_editor_20250124", "name": "str_replace_editor"}, 0, None),
        ({"type": "web_search_20250305", "name": "web_search", "max_uses": 4}, 4, None),
        ({"type": "web_search_20250305", "name": "web_search"}, 0, "tools[0] (web_search_20250305 without max_uses)"),
        ({"type": "web_fetch_20250910", "name": "web_fetch"}, 0, "tools[0] (server tool 'web_fetch_20250910')"),
    ],
)
def test_messages_tools_bill_nothing_are_bounded_or_are_named(
    tool: dict[str, Any], searches: int, unbounded: str | None
) -> None:
    request = MESSAGES.read_request(
        {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    )
    assert sum(allowance.searches for allowance in request.searches) == searches
    assert request.unbounded == ((unbounded,) if unbounded else ())


def test_a_legacy_completion_holds_every_completion_best_of_generates() -> None:
    request = COMPLETIONS.read_request({"model": "m", "prompt": ["a", "b"], "max_tokens": 20, "n": 2, "best_of": 5})
    assert (request.choices, request.completion_limit, request.messages) == (5, 20, 2)
    admission = plan_admission(request, PRICE)
    assert admission.wanted == admission.prompt_cost + 5 * 20 * 15


# -- where the limit is clamped -------------------------------------------------------------


def test_responses_are_clamped_at_max_output_tokens_and_always_ask_for_the_cost() -> None:
    payload: dict[str, Any] = {
        "input": "hi",
        "reasoning": {"effort": "high", "max_tokens": 5000},
        "usage": {"other": 1},
    }
    RESPONSES.prepare(payload, 1200)  # type: ignore[misc]
    assert payload["max_output_tokens"] == 1200
    assert payload["reasoning"] == {"effort": "high", "max_tokens": 1200}
    assert payload["usage"] == {"other": 1, "include": True}


def test_messages_are_clamped_at_max_tokens_with_the_thinking_budget_below_it() -> None:
    payload: dict[str, Any] = {"max_tokens": 64_000, "thinking": {"type": "enabled", "budget_tokens": 4096}}
    MESSAGES.prepare(payload, 2000)  # type: ignore[misc]
    assert payload == {"max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1999}}
    roomy: dict[str, Any] = {"max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    MESSAGES.prepare(roomy, 5000)  # type: ignore[misc]
    assert roomy["thinking"]["budget_tokens"] == 1024


def test_legacy_completions_are_clamped_at_max_tokens_and_stream_their_usage() -> None:
    payload: dict[str, Any] = {"prompt": "hi", "stream": True}
    COMPLETIONS.prepare(payload, 77)  # type: ignore[misc]
    assert payload == {"prompt": "hi", "stream": True, "max_tokens": 77, "stream_options": {"include_usage": True}}


def test_the_end_user_is_named_where_each_api_takes_it() -> None:
    chat: dict[str, Any] = {}
    messages: dict[str, Any] = {"metadata": {"trace": "t"}}
    CHAT.name_user(chat, "p1")
    MESSAGES.name_user(messages, "p1")
    assert chat == {"user": "p1"} and messages == {"metadata": {"trace": "t", "user_id": "p1"}}


# -- the meter, on the fake's real streams --------------------------------------------------


async def _from_fake(
    path: str, body: dict[str, Any], fake: FakeOpenRouter | None = None
) -> tuple[bytes, FakeOpenRouter]:
    fake = fake or FakeOpenRouter(reply_text=REPLY)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake), base_url="http://fake") as http:
        response = await http.post(path, json=body, headers={"authorization": "Bearer sk-or-v1-k"})
    return response.content, fake


def _meter(dialect: Dialect, raw: bytes, split: int, **options: Any) -> ResponseMeter:
    meter = ResponseMeter(100, Decimal(15), read_event=dialect.read_event, usage_tokens=dialect.usage_tokens, **options)
    for start in range(0, len(raw), split):
        meter.feed(raw[start : start + split])
    return meter


SPLITS = pytest.mark.parametrize("split", [1, 9, 100_000], ids=["byte-by-byte", "odd", "whole"])


@SPLITS
async def test_the_meter_reads_a_streamed_response_and_its_cost_on_the_terminal_event(split: int) -> None:
    body = {"model": "openai/gpt-4o-mini", "input": "hi", "stream": True, "usage": {"include": True}}
    raw, fake = await _from_fake("/api/v1/responses", body)
    meter = _meter(RESPONSES, raw, split)
    [generation] = fake.ledger.records

    assert meter.done and meter.error is None and meter.finish_reason == "stop"
    assert meter.generation_id == generation.id
    assert meter.trusted_cost() == micros_from_usd(generation.total_cost)
    assert meter.output_events == len(word_pieces(REPLY))  # each delta, once


@SPLITS
async def test_a_streamed_response_without_its_cost_is_unknown_and_priced_from_its_tokens(split: int) -> None:
    raw, fake = await _from_fake("/api/v1/responses", {"model": "openai/gpt-4o-mini", "input": "hi", "stream": True})
    prices = TokenPrices(input=Decimal("0.15"), output=Decimal("0.6"), fees=0)
    meter = _meter(RESPONSES, raw, split, token_prices=prices)
    [generation] = fake.ledger.records

    assert meter.done and meter.trusted_cost() is None  # no cost stated: unknown, not free
    # Priced from the usage's counts at the model's prices: the fake's own bill, rounded up.
    assert meter.estimated_cost() == micros_from_usd(generation.total_cost)


@SPLITS
async def test_a_streamed_message_has_no_cost_and_is_priced_from_its_cumulative_tokens(split: int) -> None:
    body = {
        "model": "anthropic/claude-sonnet-4",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    raw, fake = await _from_fake("/api/v1/messages", body)
    meter = _meter(MESSAGES, raw, split, token_prices=TokenPrices(input=Decimal(3), output=Decimal(15), fees=0))
    [generation] = fake.ledger.records

    assert meter.done and meter.finish_reason == "stop" and meter.error is None
    assert meter.usage is not None and meter.usage["input_tokens"] == generation.prompt_tokens  # from message_start
    assert meter.usage["output_tokens"] == generation.completion_tokens  # from message_delta
    assert meter.trusted_cost() is None
    assert meter.estimated_cost() == micros_from_usd(generation.total_cost)


async def test_whole_bodies_state_their_cost_on_every_api() -> None:
    cases = [
        (RESPONSES, "/api/v1/responses", {"model": "openai/gpt-4o-mini", "input": "hi", "usage": {"include": True}}),
        (
            MESSAGES,
            "/api/v1/messages",
            {"model": "anthropic/claude-sonnet-4", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
        ),
        (COMPLETIONS, "/api/v1/completions", {"model": "openai/gpt-4o-mini", "prompt": "hi"}),
    ]
    for dialect, path, body in cases:
        raw, fake = await _from_fake(path, body)
        meter = ResponseMeter(100, Decimal(15), read_event=dialect.read_event)
        meter.observe(json.loads(raw), whole=True)
        [generation] = fake.ledger.records
        assert meter.trusted_cost() == micros_from_usd(generation.total_cost), dialect.kind
        assert meter.output_chars == len(REPLY), dialect.kind


async def test_upstream_failures_mid_stream_are_seen_on_every_api() -> None:
    cases = [
        (RESPONSES, "/api/v1/responses", {"model": "openai/gpt-4o-mini", "input": "hi"}),
        (
            MESSAGES,
            "/api/v1/messages",
            {"model": "anthropic/claude-sonnet-4", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
        ),
        (COMPLETIONS, "/api/v1/completions", {"model": "openai/gpt-4o-mini", "prompt": "hi"}),
    ]
    for dialect, path, body in cases:
        fake = FakeOpenRouter(reply_text=REPLY)
        fake.inject(mid_stream_error_after=2, path=path)
        raw, _ = await _from_fake(path, {**body, "stream": True}, fake)
        meter = _meter(dialect, raw, 7)
        assert meter.finish_reason == "error" and meter.error is not None, dialect.kind
        assert meter.trusted_cost() is None, dialect.kind


def test_a_responses_stream_ends_on_response_done_or_on_done_alone() -> None:
    usage = {"input_tokens": 3, "output_tokens": 2, "cost": 0.00001}
    done = _data({"type": "response.done", "response": {"status": "completed", "usage": usage}})
    meter = _meter(RESPONSES, done, 5)
    assert meter.done and meter.trusted_cost() == 10
    bare = _meter(RESPONSES, b'data: {"type":"response.output_text.delta","delta":"Hi"}\n\ndata: [DONE]\n\n', 3)
    assert bare.done and bare.output_chars == 2


# -- the events that end a stream we stopped, as real SDKs see them -------------------------


STOPPED = [
    BudgetExceededError("the user's monthly cap is reached; the stream was stopped"),
    NotConnectedError("the user disconnected their AI budget; the stream was stopped"),
    UpstreamError("the model provider dropped the stream"),
]


def _data(payload: dict[str, Any], name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + json.dumps(payload).encode() + b"\n\n"


def _sse(*events: bytes, content_type: str = "text/event-stream") -> httpx2.MockTransport:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, content=b"".join(events))

    return httpx2.MockTransport(answer)


def _raised(error: WattfareError, exc: BaseException) -> None:
    found = to_wattfare_error(exc)
    assert found is not None and (found.code, found.message) == (error.code, error.message), repr(exc)


@pytest.mark.parametrize("error", STOPPED, ids=lambda error: error.code)
def test_the_openai_sdk_raises_our_error_at_a_responses_cut_off(error: WattfareError) -> None:
    delta = _data(
        {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0, "delta": "Hi"},
        name="response.output_text.delta",
    )
    transport = _sse(delta, RESPONSES.cut_off(error, 1))
    client = openai.OpenAI(
        base_url="http://up/v1", api_key="k", http_client=httpx2.Client(transport=transport), max_retries=0
    )  # type: ignore[arg-type]
    seen: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for event in client.responses.create(model="m", input="hi", stream=True):
            seen.append(event.type)
    assert seen == ["response.output_text.delta"]
    _raised(error, raised.value)


@pytest.mark.parametrize("error", STOPPED, ids=lambda error: error.code)
def test_the_anthropic_sdk_raises_our_error_at_a_messages_cut_off(error: WattfareError) -> None:
    message = {"id": "g", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": None}
    start = _data({"type": "message_start", "message": {**message, "usage": {"input_tokens": 3}}}, name="message_start")
    transport = _sse(start, MESSAGES.cut_off(error, 1))
    client = anthropic.Anthropic(
        base_url="http://up", api_key="k", http_client=httpx2.Client(transport=transport), max_retries=0
    )
    with pytest.raises(anthropic.APIStatusError) as raised:
        list(
            client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True)
        )
    _raised(error, raised.value)


@pytest.mark.parametrize("error", [*STOPPED, InvalidRequestError("bad")], ids=lambda error: error.code)
def test_the_anthropic_sdk_raises_our_error_from_an_anthropic_shaped_body(error: WattfareError) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            error.status, headers={"content-type": "application/json"}, content=MESSAGES.error_body(error)
        )

    client = anthropic.Anthropic(
        base_url="http://up",
        api_key="k",
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
        max_retries=0,
    )
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == error.status
    assert json.loads(MESSAGES.error_body(error))["type"] == "error"
    _raised(error, raised.value)


@pytest.mark.parametrize("error", STOPPED, ids=lambda error: error.code)
def test_the_openai_sdk_raises_our_error_at_a_legacy_completion_cut_off(error: WattfareError) -> None:
    chunk = b'data: {"id":"g","object":"text_completion","choices":[{"text":"Hi","index":0,"finish_reason":null}]}\n\n'
    transport = _sse(chunk, COMPLETIONS.cut_off(error, 1))
    client = openai.OpenAI(
        base_url="http://up/v1", api_key="k", http_client=httpx2.Client(transport=transport), max_retries=0
    )  # type: ignore[arg-type]
    with pytest.raises(openai.APIError) as raised:
        list(client.completions.create(model="m", prompt="hi", stream=True))
    _raised(error, raised.value)
