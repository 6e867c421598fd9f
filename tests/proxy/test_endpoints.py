"""The Responses API, Anthropic Messages, legacy completions and the model lookup through the proxy, over
real HTTP: the same admission, clamping, cut-off, settlement and reconciliation as chat completions."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from wattfare_embed.money import micros_from_usd

from .conftest import MINI, SONNET, Proxied, error_of, sse_data

RESPONSES, MESSAGES, COMPLETIONS = "/api/v1/responses", "/api/v1/messages", "/api/v1/completions"
HELLO = [{"role": "user", "content": "Say hello"}]
OVERRUN = " ".join(f"w{i}" for i in range(150))


def _named_events(raw: bytes) -> list[tuple[str | None, Any]]:
    events = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, None
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                text = line[5:].strip().decode()
                data = text if text == "[DONE]" else json.loads(text)
        if data is not None:
            events.append((name, data))
    return events


async def _stream(
    proxy: Proxied, path: str, user: str, body: dict[str, Any], **headers: str
) -> tuple[httpx2.Response, bytes]:
    async with proxy.http.stream(
        "POST", path, json={**body, "stream": True}, headers={**proxy.headers(user), **headers}
    ) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, raw


# -- the Responses API ----------------------------------------------------------------------


async def test_a_response_is_clamped_asks_for_its_cost_and_settles_at_the_upstreams_figure(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id, "0.05")
    answer = await lite.http.post(
        RESPONSES, json={"model": SONNET, "input": "Say hello"}, headers=lite.headers(user_id)
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "response" and answer.json()["usage"]["cost"] > 0
    [sent] = lite.upstream_calls(RESPONSES)
    # No max_output_tokens sent: clamped to what the hold pays for; the cost always asked for.
    assert 0 < sent.json["max_output_tokens"] < 64_000 and sent.json["usage"] == {"include": True}
    assert len(sent.json["user"]) == 32 and user_id not in json.dumps(sent.json)  # a pseudonym
    [row] = await lite.settled(user_id, 1)
    assert (row.kind, row.cost_source) == ("responses", "reported")
    assert row.cost == micros_from_usd(lite.generation(row.generation_id).total_cost)


async def test_a_streamed_response_without_done_settles_reported_and_gets_nothing_added(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id)
    lite.fake.responses_done_marker = False  # as OpenAI's own stream ends: at response.completed

    response, raw = await _stream(lite, RESPONSES, user_id, {"model": MINI, "input": "Say hello"})

    assert response.status_code == 200 and raw == lite.recorder.bodies(RESPONSES)[0]  # untouched, nothing of ours
    assert _named_events(raw)[-1][0] == "response.completed"
    [row] = await lite.settled(user_id, 1)
    assert row.cost_source == "reported" and row.cost == micros_from_usd(lite.generation(row.generation_id).total_cost)


@pytest.mark.parametrize(
    ("extra", "names"),
    [({"store": True}, "store"), ({"previous_response_id": "resp_1"}, "previous_response_id")],
)
async def test_stateful_responses_are_refused_before_anything_is_held_or_sent(
    lite: Proxied, user_id: str, extra: dict[str, Any], names: str
) -> None:
    await lite.connect(user_id)
    answer = await lite.http.post(
        RESPONSES, json={"model": MINI, "input": "hi", **extra}, headers=lite.headers(user_id)
    )

    assert error_of(answer) == (400, "invalid_request") and names in answer.json()["error"]["message"]
    assert answer.headers["x-should-retry"] == "false"
    assert lite.upstream_calls(RESPONSES) == [] and await lite.ledger(user_id) == []


async def test_a_response_overrunning_its_hold_is_cut_with_an_error_event_and_stays_within_the_cap(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id, "0.001")
    lite.fake.reply_text = OVERRUN
    lite.fake.inject(ignore_max_tokens=True, path=RESPONSES)

    _, raw = await _stream(lite, RESPONSES, user_id, {"model": SONNET, "input": "Say hello"})

    name, last = _named_events(raw)[-1]
    assert name == "error" and last["type"] == "error" and last["code"] == "budget_exceeded"
    assert last["error"]["code"] == "budget_exceeded" and isinstance(last["sequence_number"], int)
    assert not any(data == "[DONE]" for _, data in _named_events(raw))
    await lite.settled(user_id, 1)
    record = await lite.connection(user_id)
    assert record.spent <= record.monthly_cap


async def test_a_response_the_upstream_failed_is_relayed_untouched_and_charged_nothing(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id)
    lite.fake.inject(mid_stream_error_after=2, path=RESPONSES)

    _, raw = await _stream(lite, RESPONSES, user_id, {"model": MINI, "input": "Say hello"})

    assert raw == lite.recorder.bodies(RESPONSES)[0]
    assert _named_events(raw)[-1][0] == "response.failed"
    [row] = await lite.settled(user_id, 1, reconciled=True)
    assert row.cost == 0


# -- Anthropic Messages ---------------------------------------------------------------------


async def test_messages_take_the_key_as_x_api_key_and_answer_errors_in_anthropics_shape(
    lite: Proxied, user_id: str
) -> None:
    body = {"model": SONNET, "max_tokens": 100, "messages": HELLO}
    headers = {
        "x-api-key": lite.keys.secret_key,
        "x-wattfare-user": user_id,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "context-1m-2025-08-07",
    }

    refused = await lite.http.post(MESSAGES, json=body, headers=headers)
    assert refused.status_code == 402
    assert refused.json() == {
        "type": "error",
        "error": {"type": "billing_error", "code": "not_connected", "message": refused.json()["error"]["message"]},
    }

    wrong = await lite.http.post(MESSAGES, json=body, headers={**headers, "x-api-key": "sk_test_nope_x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"

    await lite.connect(user_id)
    answer = await lite.http.post(MESSAGES, json=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["type"] == "message"
    [sent] = lite.upstream_calls(MESSAGES)
    assert sent.headers["authorization"].startswith("Bearer sk-or-")  # the user's funding key, not ours
    assert "x-api-key" not in sent.headers and "x-wattfare-user" not in sent.headers
    assert (sent.headers["anthropic-version"], sent.headers["anthropic-beta"]) == (
        "2023-06-01",
        "context-1m-2025-08-07",
    )
    assert "user" not in sent.json and len(sent.json["metadata"]["user_id"]) == 32
    [row] = await lite.settled(user_id, 1)
    assert (row.kind, row.cost_source) == ("messages", "reported")


async def test_a_streamed_message_is_priced_from_its_tokens_then_reconciled_from_the_generation(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id)
    body = {
        "model": SONNET,
        "max_tokens": 5000,
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "messages": HELLO,
    }

    response, raw = await _stream(lite, MESSAGES, user_id, body)

    assert response.status_code == 200 and raw == lite.recorder.bodies(MESSAGES)[0]
    [sent] = lite.upstream_calls(MESSAGES)
    assert sent.json["max_tokens"] == 5000 and sent.json["thinking"]["budget_tokens"] == 4999  # below max_tokens
    [row] = await lite.settled(user_id, 1)
    generation = lite.generation(row.generation_id)
    # The streamed usage states no cost: priced from its token counts, which is the upstream's bill here...
    assert (row.cost_source, row.reconcile) == ("estimated", True)
    assert row.cost == micros_from_usd(generation.total_cost)
    # ...and the generation record then says it for sure.
    [row] = await lite.settled(user_id, 1, reconciled=True)
    assert not row.reconcile and row.cost == micros_from_usd(generation.total_cost)


async def test_a_message_overrunning_its_hold_is_cut_with_anthropics_error_event(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.001")
    lite.fake.reply_text = OVERRUN
    lite.fake.inject(ignore_max_tokens=True, path=MESSAGES)

    _, raw = await _stream(lite, MESSAGES, user_id, {"model": SONNET, "max_tokens": 4000, "messages": HELLO})

    name, last = _named_events(raw)[-1]
    assert name == "error"
    assert last == {
        "type": "error",
        "error": {"type": "billing_error", "code": "budget_exceeded", "message": last["error"]["message"]},
    }
    await lite.settled(user_id, 1)
    record = await lite.connection(user_id)
    assert record.spent <= record.monthly_cap


# -- legacy completions and the model lookup ------------------------------------------------


async def test_a_legacy_completion_is_clamped_streamed_and_settled(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    response, raw = await _stream(lite, COMPLETIONS, user_id, {"model": MINI, "prompt": "Say hello"})

    assert response.status_code == 200 and sse_data(raw)[-1] == "[DONE]"
    [sent] = lite.upstream_calls(COMPLETIONS)
    assert sent.json["max_tokens"] > 0 and sent.json["stream_options"] == {"include_usage": True}
    [row] = await lite.settled(user_id, 1)
    assert (row.kind, row.cost_source) == ("completions", "reported")


async def test_a_model_is_looked_up_by_its_id_slash_and_all(lite: Proxied) -> None:
    found = await lite.http.get(f"/api/v1/models/{MINI}", headers=lite.headers(None))
    assert found.status_code == 200
    assert found.json()["id"] == MINI and found.json()["object"] == "model" and found.json()["owned_by"] == "openai"
    assert found.json()["pricing"]["prompt"] == "0.00000015"

    missing = await lite.http.get("/api/v1/models/openai/nope", headers=lite.headers(None))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "invalid_request"
    unauthenticated = await lite.http.get(f"/api/v1/models/{MINI}")
    assert error_of(unauthenticated) == (401, "auth")
