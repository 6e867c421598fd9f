"""The Vercel AI SDK on a Node server, against the proxy under uvicorn: both OpenAI providers.

Each row runs ``node run.mjs`` (tests/clients/node, dependencies pinned by its lockfile and
installed once with ``npm ci``) and checks what the caller's code saw, errors included.
Rows are data like the Python matrix: provider, endpoint, scenario.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import (
    CUT_OFF_CAP_USD,
    MINI,
    NODE_DEADLINE_SECONDS,
    NODE_DIR,
    OVERRUN_REPLY,
    REFUSED_CAP_USD,
    REPLY,
    SONNET,
    Stack,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class NodeRow:
    # "openai-chat": @ai-sdk/openai's .chat(); "openai-responses": its default, openai(id) on the Responses
    # API; "openai-compatible": @ai-sdk/openai-compatible
    provider: str
    endpoint: str
    scenario: str

    @property
    def id(self) -> str:
        return f"{self.provider}-{self.endpoint}-{self.scenario}"


PROVIDERS = {"openai-chat": ("chat",), "openai-responses": ("responses",), "openai-compatible": ("chat",)}
UPSTREAM_PATHS = {"chat": "/api/v1/chat/completions", "responses": "/api/v1/responses"}
SCENARIOS = ("plain", "stream", "tools", "not_connected", "over_cap", "cut_off", "upstream_cut")
ROWS = [
    NodeRow(provider, endpoint, scenario)
    for provider, endpoints in PROVIDERS.items()
    for endpoint in endpoints
    for scenario in SCENARIOS
]


async def _run(node: str, row: NodeRow, stack: Stack, *, scenario: str, user: str, model: str) -> dict[str, Any]:
    spec = {
        "provider": row.provider,
        "scenario": scenario,
        "baseURL": stack.api_url,
        "apiKey": stack.secret_key,
        "user": user,
        "model": model,
    }
    process = await asyncio.create_subprocess_exec(
        node, "run.mjs", json.dumps(spec), cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), NODE_DEADLINE_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_ai_sdk_row(row: NodeRow, stack: Stack, node_clients: str) -> None:
    node = node_clients
    if row.scenario == "plain":
        ai = await stack.user("1")
        result = await _run(node, row, stack, scenario="plain", user=ai.app_user_id, model=MINI)
        assert result == {"ok": True, "text": REPLY}, result
        assert (await ai.status()).spent > 0
    elif row.scenario == "stream":
        ai = await stack.user("1")
        result = await _run(node, row, stack, scenario="stream", user=ai.app_user_id, model=MINI)
        assert result["ok"] and result["text"] == REPLY and result["errors"] == [], result
        assert len(result["pieces"]) > 5, result  # token by token
        assert result["finishReason"] == "stop"
    elif row.scenario == "tools":
        ai = await stack.user("1")
        result = await _run(node, row, stack, scenario="tools", user=ai.app_user_id, model=MINI)
        assert result["ok"], result
        assert (result["toolName"], result["input"]) == ("get_weather", {"city": "example"})
        assert result["executed"] == [{"city": "example"}] and result["text"] == REPLY  # the tool's result went back
    elif row.scenario == "not_connected":
        ai = await stack.user(None)
        result = await _run(node, row, stack, scenario="plain", user=ai.app_user_id, model=MINI)
        # generateText throws the AI SDK's APICallError, not retryable, with our code in its data.
        assert result["ok"] is False, result
        assert result["thrown"]["name"] == "AI_APICallError" and result["thrown"]["statusCode"] == 402
        assert result["thrown"]["code"] == "not_connected" and result["thrown"]["isRetryable"] is False
    elif row.scenario == "over_cap":
        ai = await stack.user(REFUSED_CAP_USD)
        result = await _run(node, row, stack, scenario="stream", user=ai.app_user_id, model=SONNET)
        # streamText reports a refused call as an error part carrying the APICallError.
        assert result["ok"] and result["text"] == "", result
        [error] = result["errors"]
        assert (error["name"], error["statusCode"], error["code"]) == ("AI_APICallError", 402, "budget_exceeded")
    elif row.scenario == "upstream_cut":
        stack.fake.reply_text = OVERRUN_REPLY
        stack.fake.inject(drop_after=20, path=UPSTREAM_PATHS[row.endpoint])  # dropped after twenty pieces
        ai = await stack.user("1")
        result = await _run(node, row, stack, scenario="stream", user=ai.app_user_id, model=MINI)
        assert result["ok"] and len(result["pieces"]) == 20, result
        [error] = result["errors"]
        assert error["code"] == "upstream" and result["finishReason"] == "error", result
    else:
        stack.fake.reply_text = OVERRUN_REPLY
        stack.fake.inject(ignore_max_tokens=True, path=UPSTREAM_PATHS[row.endpoint])
        ai = await stack.user(CUT_OFF_CAP_USD)
        result = await _run(node, row, stack, scenario="stream", user=ai.app_user_id, model=SONNET)
        assert result["ok"], result
        # The text before the cut arrived, then one error part with our code: never a silent stop.
        assert result["pieces"] and OVERRUN_REPLY.startswith(result["text"]) and result["text"] != OVERRUN_REPLY
        [error] = result["errors"]
        assert error["code"] == "budget_exceeded" and error["message"], result
        assert result["finishReason"] == "error"
    await stack.nothing_held(ai)
