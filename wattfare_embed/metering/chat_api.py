"""Chat completions as the proxy sees them, and the two OpenAI endpoints shaped like it: legacy text
completions and embeddings.

What a request must hold (``check_*``), where its output limits live (``prepare_*``), how its
events carry output, usage and errors (``read_*_event``), how its usage counts tokens, and the
event that ends a stream the proxy stopped. ``dialects.py`` puts these together per endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, WattfareError
from .billable import BillableRequest, models_of, positive_int, text_bytes
from .limits import COMPLETION_LIMIT_FIELDS, clamp_output
from .output import chat_output

if TYPE_CHECKING:
    from .meter import ResponseMeter

__all__ = [
    "chat_cut_off",
    "chat_usage_tokens",
    "check_chat_request",
    "check_completions_request",
    "check_embeddings_request",
    "check_positive_ints",
    "check_stream_flag",
    "prepare_chat",
    "prepare_completions",
    "read_chat_event",
    "read_completion_event",
    "read_completions_request",
]

_COMPLETIONS_TEXT_KEYS = ("prompt", "suffix")


# -- requests -------------------------------------------------------------------------------


def check_stream_flag(payload: dict[str, Any]) -> None:
    if "stream" in payload and not isinstance(payload["stream"], bool):
        raise InvalidRequestError("`stream` must be true or false")


def check_positive_ints(limits: dict[str, Any]) -> None:
    for name, value in limits.items():
        # A limit we cannot read must not be replaced by a larger one of ours.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidRequestError(f"`{name}` must be a positive integer")


def check_chat_request(payload: dict[str, Any]) -> None:
    messages = payload.get("messages")
    if not (isinstance(messages, list) and messages) and not isinstance(payload.get("prompt"), str):
        raise InvalidRequestError("`messages` must be a non-empty list")
    check_stream_flag(payload)
    if payload.get("stream_options") is not None and not isinstance(payload["stream_options"], dict):
        raise InvalidRequestError("`stream_options` must be an object")
    reasoning = payload.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise InvalidRequestError("`reasoning` must be an object")
    limits = {name: payload.get(name) for name in (*COMPLETION_LIMIT_FIELDS, "n")}
    limits["reasoning.max_tokens"] = (reasoning or {}).get("max_tokens")
    check_positive_ints(limits)


def check_completions_request(payload: dict[str, Any]) -> None:
    prompt = payload.get("prompt")
    texts = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else None
    if not texts or not all(isinstance(text, str) for text in texts):
        raise InvalidRequestError("`prompt` must be a string or a non-empty list of strings")
    check_stream_flag(payload)
    check_positive_ints({name: payload.get(name) for name in ("max_tokens", "n", "best_of")})


def check_embeddings_request(payload: dict[str, Any]) -> None:
    if not isinstance(payload.get("input"), (str, list)):
        raise InvalidRequestError("`input` must be a string or a list")


def read_completions_request(payload: dict[str, Any]) -> BillableRequest:
    """A legacy completion's billable parts: its prompt, and ``n`` (or ``best_of``, which the upstream
    generates and bills in full) completions of up to ``max_tokens`` each."""
    prompt = payload.get("prompt")
    choices = max(positive_int(payload.get("n")) or 1, positive_int(payload.get("best_of")) or 1)
    return BillableRequest(
        models=models_of(payload),
        text_bytes=text_bytes(payload, _COMPLETIONS_TEXT_KEYS, 0),
        messages=len(prompt) if isinstance(prompt, list) else 1,
        choices=choices,
        completion_limit=positive_int(payload.get("max_tokens")),
    )


def _ask_for_streamed_usage(payload: dict[str, Any]) -> None:
    if payload.get("stream") is True:
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}


def prepare_chat(payload: dict[str, Any], limit: int) -> None:
    clamp_output(payload, limit)
    _ask_for_streamed_usage(payload)


def prepare_completions(payload: dict[str, Any], limit: int) -> None:
    payload["max_tokens"] = limit  # the legacy endpoint's only completion limit
    _ask_for_streamed_usage(payload)


# -- responses ------------------------------------------------------------------------------


def _choices_reader(output_of: Callable[[dict[str, Any]], tuple[int, int]]) -> Callable[..., None]:
    """An event reader for OpenAI-shaped bodies: ``choices`` carrying output and ``finish_reason``,
    ``usage`` on any event (final with or after a finish reason), a top-level ``error`` (§4.3)."""

    def read(meter: ResponseMeter, event: dict[str, Any], whole: bool) -> None:
        if meter.generation_id is None and isinstance(event.get("id"), str):
            meter.generation_id = event["id"]
        if meter.response_model is None and isinstance(event.get("model"), str):
            meter.response_model = event["model"]
        error = event.get("error")
        if isinstance(error, dict):
            meter.error = error
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            chars, media = output_of(choice)
            if chars or media:
                meter.add_output(chars, media)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                meter.finish_reason = reason
                if reason == "error" and isinstance(choice.get("error"), dict):
                    meter.error = choice["error"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            meter.take_usage(usage, final=whole or meter.finish_reason is not None)

    return read


def _chat_choice_output(choice: dict[str, Any]) -> tuple[int, int]:
    body = choice.get("delta") or choice.get("message") or {}
    return chat_output(body) if isinstance(body, dict) else (0, 0)


def _completion_choice_output(choice: dict[str, Any]) -> tuple[int, int]:
    text = choice.get("text")
    return (len(text) if isinstance(text, str) else 0), 0


read_chat_event = _choices_reader(_chat_choice_output)
read_completion_event = _choices_reader(_completion_choice_output)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_usage_tokens(usage: dict[str, Any]) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)``; reasoning is within the completion tokens."""
    if not isinstance(usage.get("prompt_tokens"), int):
        return None
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def chat_cut_off(error: WattfareError, events: int) -> bytes:
    """A bare ``{"error": {"code", "message"}}``, then ``[DONE]``: every client surfaces it as an
    error (the openai SDK raises ``APIError`` with it as the body, and the SDKs built on it with it;
    both AI SDK providers emit an error part). With ``choices`` beside it, as OpenRouter's own
    mid-stream error has, the AI SDK's ``@ai-sdk/openai`` reads a normal chunk and drops the error."""
    return b"data: " + json.dumps(error.to_json(), separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n"
