"""The fake answers tool calls and JSON-schema output the way OpenRouter does, and bills them the same."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from wattfare_embed.testing._fake_tools import example_of
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter

AUTH = {"Authorization": "Bearer sk-or-v1-test-key"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 3}},
            "required": ["city", "days"],
        },
    },
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


async def _post(fake: FakeOpenRouter, **body: Any) -> httpx2.Response:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake), base_url="http://fake") as http:
        body.setdefault("model", "openai/gpt-4o-mini")
        return await http.post("/api/v1/chat/completions", json=body, headers=AUTH)


def _events(raw: str) -> list[dict[str, Any]]:
    data = [line[5:].strip() for line in raw.splitlines() if line.startswith("data:")]
    return [json.loads(item) for item in data if item != "[DONE]"]


async def test_a_request_offering_tools_gets_a_call_with_arguments_fitting_the_schema() -> None:
    fake = FakeOpenRouter()
    response = await _post(fake, messages=ASK, tools=[WEATHER_TOOL])
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "example", "days": 3}
    # Billed like text: one completion token per streamed piece of the arguments.
    [generation] = fake.ledger.records
    assert generation.completion_tokens == response.json()["usage"]["completion_tokens"] > 0


async def test_a_streamed_tool_call_opens_with_its_name_and_streams_its_arguments() -> None:
    fake = FakeOpenRouter()
    response = await _post(fake, messages=ASK, tools=[WEATHER_TOOL], stream=True)
    events = [event for event in _events(response.text) if event["choices"]]
    opening = events[0]["choices"][0]["delta"]["tool_calls"][0]
    assert opening["function"] == {"name": "get_weather", "arguments": ""} and opening["id"].startswith("call_")
    pieces = [
        call["function"]["arguments"]
        for event in events[1:]
        for call in event["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert len(pieces) > 2 and json.loads("".join(pieces)) == {"city": "example", "days": 3}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_tool_result_is_answered_with_text_and_tool_choice_none_is_respected() -> None:
    fake = FakeOpenRouter(reply_text="It is sunny")
    answered = [
        *ASK,
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    for body in (
        {"messages": answered, "tools": [WEATHER_TOOL]},
        {"messages": ASK, "tools": [WEATHER_TOOL], "tool_choice": "none"},
    ):
        [choice] = (await _post(fake, **body)).json()["choices"]
        assert choice["message"]["content"] == "It is sunny" and choice["finish_reason"] == "stop"


async def test_a_named_tool_choice_picks_that_tool() -> None:
    other = {"type": "function", "function": {"name": "final_result", "parameters": {"type": "object"}}}
    response = await _post(
        FakeOpenRouter(),
        messages=ASK,
        tools=[WEATHER_TOOL, other],
        tool_choice={"type": "function", "function": {"name": "final_result"}},
    )
    assert response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "final_result"


async def test_a_json_schema_response_format_gets_json_that_fits_it() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}}},
        "$defs": {
            "Tag": {"type": "object", "properties": {"label": {"enum": ["a", "b"]}, "score": {"type": "number"}}}
        },
    }
    response = await _post(
        FakeOpenRouter(reply_text="ignored"),
        messages=ASK,
        response_format={"type": "json_schema", "json_schema": {"name": "Person", "schema": schema, "strict": True}},
    )
    content = response.json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"name": "example", "tags": [{"label": "a", "score": 1.5}]}


def test_examples_cover_nullable_unions_formats_and_recursion() -> None:
    assert example_of({"anyOf": [{"type": "null"}, {"type": "integer"}]}) == 1
    assert example_of({"type": ["null", "boolean"]}) is True
    assert example_of({"type": "string", "format": "date"}) == "2026-01-01"
    node = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
    }
    assert isinstance(example_of(node), dict)  # a recursive schema ends, with an empty value deep down
