"""``wattfare_embed.ai_sdk``: a FastAPI route streaming a metered reply to ``useChat``, read by the
AI SDK's own client code under Node (the transport useChat uses, and readUIMessageStream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request

from tests.node_toolchain import run_node
from wattfare_embed import Wattfare
from wattfare_embed.ai_sdk import UIMessageStreamResponse, to_openai_messages
from wattfare_embed.contrib.fastapi import CurrentWattfareUser, install_wattfare, wattfare_router
from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import MINI, MOUNT, EmbedFactory, Upstream, connect_user, ledger, settled

LONG_REPLY = " ".join(f"word{index}" for index in range(80))

# The keys each chunk type may carry in the protocol (ai's ui-message-chunks.ts): nothing of ours.
ALLOWED_KEYS = {
    "start": {"type", "messageId", "messageMetadata"},
    "start-step": {"type"},
    "finish-step": {"type"},
    "text-start": {"type", "id"},
    "text-delta": {"type", "id", "delta"},
    "text-end": {"type", "id"},
    "reasoning-start": {"type", "id"},
    "reasoning-delta": {"type", "id", "delta"},
    "reasoning-end": {"type", "id"},
    "tool-input-start": {"type", "toolCallId", "toolName"},
    "tool-input-delta": {"type", "toolCallId", "inputTextDelta"},
    "tool-input-available": {"type", "toolCallId", "toolName", "input"},
    "message-metadata": {"type", "messageMetadata"},
    "error": {"type", "errorText"},
    "finish": {"type", "finishReason", "messageMetadata"},
}


def scripted_reply() -> list[dict[str, Any]]:
    """OpenRouter-shaped chunks with reasoning, text and a tool call split over three deltas."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "gen-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return [
        chunk({"role": "assistant", "reasoning": "The user wants "}),
        chunk({"reasoning": "the weather."}),
        chunk({"content": "Let me look "}),
        chunk({"content": "that up."}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
        {"id": "gen-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "cost": 0.000042}},
    ]


async def _chunks(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


def chat_app(wf: Wattfare) -> FastAPI:
    app = FastAPI()
    app.include_router(wattfare_router(wf), prefix=MOUNT)
    install_wattfare(app)

    # The route of the README, as a developer writes it.
    @app.post("/api/chat")
    async def chat(request: Request, ai: CurrentWattfareUser) -> UIMessageStreamResponse:
        body = await request.json()
        completion = ai.openai().chat.completions.create(
            model=MINI, messages=to_openai_messages(body["messages"]), stream=True
        )
        return UIMessageStreamResponse(completion, user=ai)

    @app.post("/api/scripted")
    async def scripted() -> UIMessageStreamResponse:
        return UIMessageStreamResponse(_chunks(scripted_reply()), message_id="msg-scripted")

    return app


def ui_user_message(text: str) -> dict[str, Any]:
    return {"id": "m1", "role": "user", "parts": [{"type": "text", "text": text}]}


def types_of(result: dict[str, Any]) -> list[str]:
    """Chunk types in order, runs of deltas folded into one."""
    folded: list[str] = []
    for chunk in result["chunks"]:
        if not (folded and folded[-1] == chunk["type"] and chunk["type"].endswith("-delta")):
            folded.append(chunk["type"])
    return folded


def assert_only_protocol_keys(result: dict[str, Any]) -> None:
    for chunk in result["chunks"]:
        assert set(chunk) <= ALLOWED_KEYS[chunk["type"]], chunk


@pytest.fixture
async def results(new_embed: EmbedFactory, upstream: Upstream) -> AsyncIterator[tuple[Wattfare, dict[str, Any]]]:
    wf = new_embed(lambda request: request.query_params.get("user"), app_name="Acme Chat")
    await connect_user(wf, "alice", monthly_usd=1)
    await connect_user(wf, "carol", monthly_usd="0.00003")  # 30 µ$: a few dozen tokens
    upstream.fake.reply_text = LONG_REPLY
    # Carol's request comes first: the provider overruns her clamped max_tokens and is cut off.
    upstream.fake.inject(ignore_max_tokens=True)
    async with serve_in_loop(chat_app(wf)) as base_url:
        requests = [
            {"name": "carol", "url": f"{base_url}/api/chat?user=carol", "messages": [ui_user_message("A story?")]},
            {"name": "alice", "url": f"{base_url}/api/chat?user=alice", "messages": [ui_user_message("Say hello")]},
            {"name": "bob", "url": f"{base_url}/api/chat?user=bob", "messages": [ui_user_message("Hi")]},
            {"name": "scripted", "url": f"{base_url}/api/scripted", "messages": [ui_user_message("Weather?")]},
        ]
        printed = await asyncio.to_thread(run_node, "test/read-ui-message-stream.ts", stdin=json.dumps(requests))
        yield wf, json.loads(printed)


async def test_a_metered_reply_reads_cleanly_in_the_ai_sdk_with_cost_and_budget_in_its_metadata(
    results: tuple[Wattfare, dict[str, Any]],
) -> None:
    wf, streams = results
    alice = streams["alice"]
    assert alice["failure"] is None and alice["errors"] == [], alice
    assert alice["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
    assert alice["headers"]["content-type"].startswith("text/event-stream")
    assert alice["headers"]["x-accel-buffering"] == "no"
    assert types_of(alice) == ["start", "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish"]
    assert_only_protocol_keys(alice)
    message = alice["message"]
    assert message["role"] == "assistant"
    assert [part["type"] for part in message["parts"]] == ["step-start", "text"]
    assert message["parts"][1]["text"] == LONG_REPLY and message["parts"][1]["state"] == "done"

    record, rows = await settled(wf, "alice", 1)
    budget = message["metadata"]["wattfare"]
    assert micros_from_usd(budget["costUsd"]) == rows[0].cost == record.spent > 0
    assert micros_from_usd(budget["spentUsd"]) == record.spent
    assert budget["monthlyUsd"] == 1
    assert micros_from_usd(budget["remainingUsd"]) == record.monthly_cap - record.spent
    assert alice["chunks"][-1] == {"type": "finish", "finishReason": "stop", "messageMetadata": message["metadata"]}


async def test_not_connected_is_an_error_chunk_the_js_helpers_decode(results: tuple[Wattfare, dict[str, Any]]) -> None:
    wf, streams = results
    bob = streams["bob"]
    assert bob["failure"] is None, bob
    assert [error["code"] for error in bob["errors"]] == ["not_connected"]
    assert json.loads(bob["errors"][0]["message"])["error"]["code"] == "not_connected"
    assert types_of(bob) == ["start", "error", "finish"]
    assert_only_protocol_keys(bob)
    assert bob["message"] is None, "no message at all: no empty reply bubble"
    assert await ledger(wf, "bob") == []


async def test_a_cut_off_at_the_cap_keeps_the_partial_reply_then_a_budget_exceeded_error(
    results: tuple[Wattfare, dict[str, Any]],
) -> None:
    wf, streams = results
    carol = streams["carol"]
    assert carol["failure"] is None, carol
    assert [error["code"] for error in carol["errors"]] == ["budget_exceeded"]
    assert types_of(carol) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "message-metadata",  # before the error: useChat stops reading at an error chunk
        "error",
        "finish",
    ]
    assert_only_protocol_keys(carol)
    text = carol["message"]["parts"][1]["text"]
    assert text and LONG_REPLY.startswith(text) and len(text) < len(LONG_REPLY)
    record, _ = await settled(wf, "carol", 1)
    assert record.spent <= record.monthly_cap
    assert carol["message"]["metadata"]["wattfare"]["spentUsd"] >= 0


async def test_reasoning_text_and_a_streamed_tool_call_become_their_ui_parts(
    results: tuple[Wattfare, dict[str, Any]],
) -> None:
    _, streams = results
    scripted = streams["scripted"]
    assert scripted["failure"] is None and scripted["errors"] == [], scripted
    assert types_of(scripted) == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "finish-step",
        "finish",
    ]
    assert_only_protocol_keys(scripted)
    message = scripted["message"]
    assert message["id"] == "msg-scripted"
    parts = {part["type"]: part for part in message["parts"]}
    assert parts["reasoning"]["text"] == "The user wants the weather."
    assert parts["text"]["text"] == "Let me look that up."
    tool = parts["tool-get_weather"]
    assert (tool["toolCallId"], tool["state"], tool["input"]) == ("call_1", "input-available", {"city": "Paris"})
    assert scripted["chunks"][-1] == {"type": "finish", "finishReason": "tool-calls"}
