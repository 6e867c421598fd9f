"""The fake's other generating endpoints speak as OpenRouter does, to the real SDKs: the Responses API,
Anthropic Messages and legacy completions, each billed exactly as the same request on chat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from pydantic import BaseModel

from wattfare_embed.testing._fake_reply import word_pieces
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve

KEY = "sk-or-v1-endpoints"
MINI, SONNET = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4"
REPLY = "Hello there from the fake upstream"
REPLY_TOKENS = len(word_pieces(REPLY))
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class City(BaseModel):
    name: str
    population: int


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeOpenRouter, str]]:
    fake = FakeOpenRouter(reply_text=REPLY)
    with serve(fake, lifespan="off") as url:
        yield fake, url


@pytest.fixture
def fake(served: tuple[FakeOpenRouter, str]) -> Iterator[FakeOpenRouter]:
    yield served[0]
    served[0].faults.clear()


@pytest.fixture
def url(served: tuple[FakeOpenRouter, str]) -> str:
    return served[1]


@pytest.fixture
def oa(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/api/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def claude(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url + "/api", api_key=KEY, max_retries=0)


def _raw(url: str, path: str, body: dict[str, Any], **headers: str) -> httpx2.Response:
    return httpx2.post(url + path, json=body, headers={"authorization": f"Bearer {KEY}", **headers}, timeout=10)


def _events(response: httpx2.Response) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of an SSE body; ``[DONE]`` as the string."""
    events = []
    for block in response.text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                raw = line.removeprefix("data: ")
                data = raw if raw == "[DONE]" else json.loads(raw)
        if data is not None:
            events.append((name, data))
    return events


def _cost(fake: FakeOpenRouter, generation_id: str) -> Decimal:
    [record] = [g for g in fake.ledger.records if g.id == generation_id]
    return record.total_cost


def _chat_cost(fake: FakeOpenRouter, url: str, model: str, text: str, **extra: Any) -> Decimal:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    answer = _raw(url, "/api/v1/chat/completions", body).json()
    return _cost(fake, answer["id"])


# -- the Responses API ----------------------------------------------------------------------


def test_a_response_is_billed_as_the_same_chat_and_states_its_cost_only_when_asked(
    fake: FakeOpenRouter, url: str, oa: openai.OpenAI
) -> None:
    asked = oa.responses.create(model=MINI, input="hi there", extra_body={"usage": {"include": True}})
    assert asked.output_text == REPLY
    assert asked.usage is not None and asked.usage.output_tokens == REPLY_TOKENS
    cost = _cost(fake, asked.id)
    assert Decimal(repr(asked.usage.model_extra["cost"])) == cost == _chat_cost(fake, url, MINI, "hi there")

    unasked = _raw(url, "/api/v1/responses", {"model": MINI, "input": "hi there"}).json()
    assert "cost" not in unasked["usage"] and unasked["usage"]["input_tokens"] == asked.usage.input_tokens
    assert _cost(fake, unasked["id"]) == cost  # charged all the same


def test_a_streamed_response_uses_the_spec_event_names_with_usage_on_the_terminal_event(url: str) -> None:
    body = {"model": MINI, "input": "hi", "stream": True, "usage": {"include": True}}
    response = _raw(url, "/api/v1/responses", body)
    events = _events(response)
    names = [name for name, _ in events]

    assert response.headers["content-type"].startswith("text/event-stream")
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-5:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
        None,  # the [DONE] the docs show after it
    ]
    assert [data for _, data in events][-1] == "[DONE]"
    payloads = [data for _, data in events if data != "[DONE]"]
    assert all(name == data["type"] for (name, _), data in zip(events, payloads, strict=False))
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    deltas = [p["delta"] for p in payloads if p["type"] == "response.output_text.delta"]
    assert "".join(deltas) == REPLY and len(deltas) > 3
    completed = payloads[-1]
    assert completed["type"] == "response.completed" and completed["response"]["usage"]["cost"] > 0
    assert completed["response"]["id"] == response.headers["x-generation-id"]
    assert all(p.get("response", {}).get("usage") is None for p in payloads[:-1])


def test_a_response_cut_by_max_output_tokens_is_incomplete(url: str) -> None:
    response = _events(
        _raw(url, "/api/v1/responses", {"model": MINI, "input": "hi", "max_output_tokens": 2, "stream": True})
    )
    terminal = response[-2][1]
    assert terminal["type"] == "response.incomplete"
    assert terminal["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert terminal["response"]["usage"]["output_tokens"] == 2


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ],
)
def test_stateful_requests_are_refused_as_openrouter_does(url: str, extra: dict[str, Any], words: str) -> None:
    response = _raw(url, "/api/v1/responses", {"model": MINI, "input": "hi", **extra})
    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


def test_a_response_calls_a_function_tool_and_reads_its_output_back(oa: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER}
    first = oa.responses.create(model=MINI, input="weather in Paris?", tools=[tool])
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "example"}

    second = oa.responses.create(
        model=MINI,
        tools=[tool],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert second.output_text == REPLY


def test_structured_output_through_text_format(oa: openai.OpenAI) -> None:
    parsed = oa.responses.parse(model=MINI, input="a city", text_format=City)
    assert parsed.output_parsed == City(name="example", population=1)


def test_a_response_that_fails_mid_stream_ends_in_response_failed_and_is_not_charged(
    fake: FakeOpenRouter, url: str
) -> None:
    fake.inject(mid_stream_error_after=2, mid_stream_error_code=429, path="/api/v1/responses")
    response = _raw(url, "/api/v1/responses", {"model": MINI, "input": "hi", "stream": True})
    events = _events(response)
    name, failed = events[-1]
    assert name == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "rate_limit_exceeded"
    assert failed["response"]["error_type"] == "rate_limit_exceeded"
    assert _cost(fake, response.headers["x-generation-id"]) == 0  # Zero Completion Insurance


def test_the_openai_sdk_stream_helper_assembles_the_final_response(oa: openai.OpenAI) -> None:
    with oa.responses.stream(model=MINI, input="hi") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == REPLY


# -- Anthropic Messages ---------------------------------------------------------------------


def test_a_message_states_its_cost_in_the_body_but_not_in_the_streamed_usage(
    fake: FakeOpenRouter, url: str, claude: anthropic.Anthropic
) -> None:
    hello = [{"role": "user", "content": "hi there"}]
    message = claude.messages.create(model=SONNET, max_tokens=200, messages=hello)
    assert [block.text for block in message.content] == [REPLY] and message.stop_reason == "end_turn"
    assert Decimal(repr(message.usage.model_extra["cost"])) == _cost(fake, message.id)
    assert _cost(fake, message.id) == _chat_cost(fake, url, SONNET, "hi there", max_tokens=200)

    with claude.messages.stream(model=SONNET, max_tokens=200, messages=hello) as stream:
        assert "".join(stream.text_stream) == REPLY
        final = stream.get_final_message()
    assert final.usage.output_tokens == message.usage.output_tokens
    assert "cost" not in (final.usage.model_extra or {})
    assert _cost(fake, final.id) == _cost(fake, message.id)  # charged all the same


def test_a_streamed_message_uses_anthropics_event_names(url: str) -> None:
    body = {"model": SONNET, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = _raw(url, "/api/v1/messages", body)
    names = [name for name, _ in _events(response)]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert response.headers["x-generation-id"]


def test_the_anthropic_sdk_authenticates_with_x_api_key(fake: FakeOpenRouter, url: str) -> None:
    body = {"model": SONNET, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx2.post(url + "/api/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=10)
    assert response.status_code == 200 and response.json()["type"] == "message"
    assert fake.requests[-1].headers["x-api-key"] == KEY


def test_messages_errors_are_anthropic_shaped(fake: FakeOpenRouter, url: str, claude: anthropic.Anthropic) -> None:
    missing = httpx2.post(
        url + "/api/v1/messages", json={"model": SONNET, "max_tokens": 10, "messages": []}, timeout=10
    )
    assert missing.status_code == 401
    assert missing.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": missing.json()["error"]["message"]},
    }

    fake.inject(status=402, path="/api/v1/messages")
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude.messages.create(model=SONNET, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "billing_error", "message": "Insufficient credits"},
    }

    fake.inject(mid_stream_error_after=2, path="/api/v1/messages")
    stream = claude.messages.stream(model=SONNET, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.APIStatusError) as failed, stream as events:  # raised on the `error` event
        "".join(events.text_stream)
    assert isinstance(failed.value.body, dict) and failed.value.body["error"]["type"] == "api_error"


def test_a_message_calls_a_tool_and_answers_its_result(claude: anthropic.Anthropic) -> None:
    tools = [{"name": "get_weather", "description": "the weather", "input_schema": WEATHER}]
    asked = [{"role": "user", "content": "weather in Paris?"}]
    first = claude.messages.create(model=SONNET, max_tokens=200, messages=asked, tools=tools)
    [use] = first.content
    assert first.stop_reason == "tool_use" and use.type == "tool_use"
    assert (use.name, use.input) == ("get_weather", {"city": "example"})

    result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}
    conversation = [*asked, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
    second = claude.messages.create(model=SONNET, max_tokens=200, messages=conversation, tools=tools)
    assert second.content[0].text == REPLY


def test_a_message_with_structured_output_and_one_cut_by_max_tokens(claude: anthropic.Anthropic) -> None:
    parsed = claude.messages.parse(
        model=SONNET, max_tokens=200, messages=[{"role": "user", "content": "a city"}], output_format=City
    )
    assert parsed.parsed_output == City(name="example", population=1)
    short = claude.messages.create(model=SONNET, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2


# -- legacy completions ---------------------------------------------------------------------


def test_legacy_completions_answer_text_streamed_or_not_with_usage(fake: FakeOpenRouter, oa: openai.OpenAI) -> None:
    whole = oa.completions.create(model=MINI, prompt="hi there")
    assert whole.choices[0].text == REPLY and whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None and Decimal(repr(whole.usage.model_extra["cost"])) == _cost(fake, whole.id)

    chunks = list(oa.completions.create(model=MINI, prompt="hi there", stream=True))
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == REPLY_TOKENS
