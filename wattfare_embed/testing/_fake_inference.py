"""The fake's billable endpoints: authenticate, price, check, admit, answer.

Chat completions, legacy completions, the Responses API and Anthropic Messages are one generation
admitted from the chat completion each request amounts to (priced and billed by the same modules),
written back on each endpoint's own wire; embeddings bill their input alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._fake_billing import FakeBilling, PromptBill, read_prompt
from ._fake_catalog import ServedModel, serve_model
from ._fake_chat import ChatWire, TextCompletionWire
from ._fake_faults import fault_of
from ._fake_keys import FakeKey
from ._fake_ledger import Ledger, check_affordable
from ._fake_messages import MessagesWire
from ._fake_messages import chat_view as messages_view
from ._fake_reply import (
    GenerationStream,
    OutputPiece,
    ReplyPlan,
    Wire,
    complete_in_one_body,
    media_payload,
    word_pieces,
)
from ._fake_responses import ResponsesWire
from ._fake_responses import chat_view as responses_view
from ._fake_tools import structured_reply, tool_call_for
from ._fake_wire import JSONObject, OpenRouterError, json_object, usd

if TYPE_CHECKING:
    from .fake_openrouter import FakeOpenRouter

_EMBEDDING_DIMENSIONS = 8
_MAX_EMBEDDING_DIMENSIONS = 4_096


def inference_routes(fake: FakeOpenRouter) -> list[Route]:
    def caller(request: Request) -> FakeKey:
        # The anthropic SDK sends its key as `x-api-key`; OpenRouter takes it as well as a bearer token.
        api_key = request.headers.get("x-api-key")
        if api_key and "authorization" not in request.headers:
            return fake.keys.inference_caller(f"Bearer {api_key}")
        return fake.keys.inference_caller(request.headers.get("authorization"))

    async def chat_completions(request: Request) -> Response:
        key = caller(request)
        body = await json_object(request)
        plan = admit(fake, key, request, body)
        return await deliver(plan, ChatWire(plan), streamed=body.get("stream") is True, ledger=fake.ledger)

    async def completions(request: Request) -> Response:
        key = caller(request)
        body = await json_object(request)
        prompt = body.get("prompt")
        texts = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else []
        if not texts or not all(isinstance(text, str) for text in texts):
            raise OpenRouterError(400, "prompt must be a string or an array of strings")
        view = {**body, "messages": [{"role": "user", "content": "\n".join(texts)}]}
        view.pop("prompt")
        plan = admit(fake, key, request, view)
        return await deliver(plan, TextCompletionWire(plan), streamed=body.get("stream") is True, ledger=fake.ledger)

    async def responses(request: Request) -> Response:
        key = caller(request)
        body = await json_object(request)
        plan = admit(fake, key, request, responses_view(body))
        return await deliver(
            plan,
            ResponsesWire(plan, body, done_marker=fake.responses_done_marker),
            streamed=body.get("stream") is True,
            ledger=fake.ledger,
        )

    async def messages(request: Request) -> Response:
        key = caller(request)
        body = await json_object(request)
        plan = admit(fake, key, request, messages_view(body))
        return await deliver(plan, MessagesWire(plan), streamed=body.get("stream") is True, ledger=fake.ledger)

    async def embeddings(request: Request) -> Response:
        key = fake.keys.inference_caller(request.headers.get("authorization"))
        body = await json_object(request)
        served = serve_model(fake.models, body.get("model"), fake.auto_router_target)
        inputs = _embedding_inputs(body.get("input"))
        dimensions = _dimensions(body.get("dimensions"))
        prompt_tokens = estimate_tokens(body["input"])
        prompt = PromptBill(text_tokens=prompt_tokens)
        check_affordable(key, fake.account_remaining(), served.prices, prompt=prompt, max_output_tokens=0)
        generation = fake.ledger.admit(
            key,
            served,
            api_type="embeddings",
            streamed=False,
            prompt=prompt,
            external_user=_optional_str(body.get("user")),
            http_referer=request.headers.get("http-referer"),
        )
        fault = fault_of(request.scope)
        cost = fake.ledger.settle(
            generation,
            completion_tokens=0,
            finish_reason=None,
            cost_override=fault.cost_override if fault else None,
        )
        payload: JSONObject = {
            "id": generation.id,
            "object": "list",
            "model": served.id,
            "provider": served.provider,
            "data": [
                {"object": "embedding", "index": index, "embedding": _vector(served.id, item, dimensions)}
                for index, item in enumerate(inputs)
            ],
        }
        if not (fault and fault.no_usage):
            payload["usage"] = {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens,
                "cost": usd(cost),
                "is_byok": False,
                "cost_details": {"upstream_inference_cost": None},
            }
        return JSONResponse(payload, headers={"X-Generation-Id": generation.id})

    return [
        Route("/api/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/api/v1/completions", completions, methods=["POST"]),
        Route("/api/v1/responses", responses, methods=["POST"]),
        Route("/api/v1/messages", messages, methods=["POST"]),
        Route("/api/v1/embeddings", embeddings, methods=["POST"]),
    ]


def admit(fake: FakeOpenRouter, key: FakeKey, request: Request, body: JSONObject) -> ReplyPlan:
    """Route, price, check and admit one generation for ``key``, from its chat-completion view
    (every generating endpoint reads its request as the chat completion it amounts to)."""
    provider: JSONObject = body["provider"] if isinstance(body.get("provider"), dict) else {}
    served = serve_model(
        fake.models,
        body.get("model"),
        fake.auto_router_target,
        providers=fake.providers,
        max_price=provider.get("max_price"),
        only=provider.get("only"),
        dearest=fake.route_to_dearest,
    )
    messages = _messages(body)
    requested_max = _requested_max_tokens(body)
    knobs = fake.billing
    prompt = read_prompt(body, messages, served.prices, knobs)
    served_prices = served.prices_for(prompt.prompt_tokens, _hhmm(fake))
    if served_prices != served.prices:  # an override applies: its prices may bill images differently
        prompt = read_prompt(body, messages, served_prices, knobs)
    # JSON fitting a requested schema streams like any other reply.
    reply_text = structured_reply(body) or (
        fake.reply_text if fake.reply_text is not None else _simulated_reply(messages)
    )
    planned = plan_output(body, served, reply_text, knobs)
    check_affordable(
        key,
        fake.account_remaining(),
        served_prices,
        prompt=prompt,
        # Without max_tokens OpenRouter assumes the model's whole output budget (§5.4).
        max_output_tokens=requested_max or served.max_completion_tokens,
        output_price=max(
            served_prices.completion,
            served_prices.internal_reasoning,
            served_prices.image_output,
            served_prices.audio_output,
        ),
    )
    fault = fault_of(request.scope)
    overrun = fault is not None and fault.ignore_max_tokens
    generation = fake.ledger.admit(
        key,
        served,
        api_type="completions",
        streamed=body.get("stream") is True,
        prompt=prompt,
        prices=served_prices,
        external_user=_optional_str(body.get("user")),
        http_referer=request.headers.get("http-referer"),
        byok_fee_rate=knobs.byok_fee_rate if knobs.byok else None,
    )
    # A tool call's arguments stream like any other reply.
    tool_call = tool_call_for(body, generation.id)
    if tool_call is not None:
        planned = [OutputPiece("text", text) for text in word_pieces(tool_call.arguments)]
    pieces = planned if overrun else within(planned, requested_max or served.max_completion_tokens)
    return ReplyPlan(
        generation=generation,
        pieces=pieces,
        finish_reason="length" if len(pieces) < len(planned) else "tool_calls" if tool_call else "stop",
        tool_call=tool_call,
        created=int(fake.clock()),
        fault=fault,
        pause=fault.slow if fault is not None and fault.slow is not None else fake.chunk_delay,
        usage_shape=(fault.usage_shape if fault is not None else None) or fake.usage_shape,
    )


async def deliver(plan: ReplyPlan, wire: Wire, *, streamed: bool, ledger: Ledger) -> Response:
    if streamed:
        return GenerationStream(plan, ledger, wire)
    return await complete_in_one_body(plan, ledger, wire)


def _hhmm(fake: FakeOpenRouter) -> int:
    moment = time.gmtime(fake.clock())
    return moment.tm_hour * 100 + moment.tm_min


def _wants_reasoning(body: JSONObject, served: ServedModel) -> bool:
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):
        return reasoning.get("enabled") is not False and reasoning.get("effort") != "none"
    return body.get("reasoning_effort") not in (None, "none") or str(body.get("model")).endswith(":thinking")


def plan_output(body: JSONObject, served: ServedModel, reply_text: str, knobs: FakeBilling) -> list[OutputPiece]:
    """Everything the model would generate, unbounded: reasoning first, then the reply (as audio
    when asked and able), then images when asked and able."""
    pieces: list[OutputPiece] = []
    if _wants_reasoning(body, served):
        reasoning = word_pieces(knobs.reasoning_text)
        budget = (body.get("reasoning") or {}).get("max_tokens") if isinstance(body.get("reasoning"), dict) else None
        if isinstance(budget, int) and not isinstance(budget, bool):
            reasoning = reasoning[:budget]
        pieces += [OutputPiece("reasoning", text) for text in reasoning]
    modalities: list[Any] = body["modalities"] if isinstance(body.get("modalities"), list) else []
    if "audio" in modalities and "audio" in served.output_modalities:
        audio_bytes = 960 * knobs.audio_tokens_per_word  # 16-bit PCM at 24 kHz, 50 tokens a second
        payload = media_payload(audio_bytes, b"")
        pieces += [
            OutputPiece("audio", text, 1 + knobs.audio_tokens_per_word, payload) for text in word_pieces(reply_text)
        ]
    else:
        pieces += [OutputPiece("text", text) for text in word_pieces(reply_text)]
    if "image" in modalities and "image" in served.output_modalities:
        payload = media_payload(knobs.output_image_bytes)
        pieces += [OutputPiece("image", "", knobs.output_image_tokens, payload)] * knobs.output_images
    return pieces


def within(pieces: list[OutputPiece], max_tokens: int) -> list[OutputPiece]:
    """The pieces that fit a completion limit: reasoning, text, audio and images all count in it."""
    kept, used = [], 0
    for piece in pieces:
        if used + piece.tokens > max_tokens:
            break
        kept.append(piece)
        used += piece.tokens
    return kept


def estimate_tokens(prompt: object) -> int:
    """The fake's tokenizer: a quarter of the JSON text, rounded up. Deterministic, so tests can price it."""
    return -(-len(json.dumps(prompt)) // 4)


def _messages(body: JSONObject) -> list[Any]:
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return messages
    # OpenRouter's chat endpoint also takes a bare `prompt` (§9).
    prompt = body.get("prompt")
    if isinstance(prompt, str) and prompt:
        return [{"role": "user", "content": prompt}]
    raise OpenRouterError(400, 'Input required: specify "prompt" or "messages"')


def _requested_max_tokens(body: JSONObject) -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OpenRouterError(400, f"{field} must be a positive integer")
        return value
    return None


def _simulated_reply(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return f"Simulated reply: {_text_of(message.get('content'))}"
    return "Simulated reply: (no user message)"


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multimodal content: keep the text parts only.
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _embedding_inputs(raw: object) -> list[object]:
    if isinstance(raw, str) and raw:
        return [raw]
    if isinstance(raw, list) and raw:
        # A flat list of ints is one pre-tokenized input; otherwise each item is an input.
        if all(isinstance(item, int) for item in raw):
            return [raw]
        return list(raw)
    raise OpenRouterError(400, "input must be a non-empty string or array")


def _dimensions(raw: object) -> int:
    if raw is None:
        return _EMBEDDING_DIMENSIONS
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= _MAX_EMBEDDING_DIMENSIONS:
        raise OpenRouterError(400, f"dimensions must be an integer from 1 to {_MAX_EMBEDDING_DIMENSIONS}")
    return raw


def _vector(model_id: str, item: object, dimensions: int) -> list[float]:
    # Same input, same vector: hash bytes stretched over the dimensions, mapped into [-1, 1].
    seed = f"{model_id}\0{json.dumps(item)}".encode()
    stream = b""
    block = 0
    while len(stream) < 2 * dimensions:
        stream += hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        block += 1
    return [round(int.from_bytes(stream[2 * i : 2 * i + 2], "big") / 32767.5 - 1, 6) for i in range(dimensions)]
