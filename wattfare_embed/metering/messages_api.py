"""Anthropic Messages (``POST /messages``), the skin OpenRouter serves for the anthropic SDK, as the proxy sees it.

The output limit is ``max_tokens``, with extended thinking's ``budget_tokens`` inside it. A stream
states the input tokens in ``message_start`` and the output, cumulative, in ``message_delta``,
and OpenRouter's streamed usage has no ``cost`` (reference §1.3): such a call is priced from its
token counts and reconciled from the generation record; only a non-streamed body states the
cost. Errors, before the first byte and mid-stream, are Anthropic's
``{"type": "error", "error": {"type", "message"}}`` with our ``code`` beside them, so the
anthropic SDK raises its own error types and ``to_wattfare_error`` still finds ours.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import AuthError, InvalidRequestError, PayloadTooLargeError, RateLimitedError, WattfareError
from .billable import (
    BillableRequest,
    MediaPart,
    SearchAllowance,
    models_of,
    positive_int,
    read_chat_tool,
    search_allowance,
    searches_and_tools,
    text_bytes,
)
from .chat_api import check_positive_ints, check_stream_flag
from .media import DataUrl, pdf_pages

if TYPE_CHECKING:
    from .meter import ResponseMeter

__all__ = [
    "check_messages_request",
    "messages_cut_off",
    "messages_error_body",
    "messages_usage_tokens",
    "name_messages_user",
    "prepare_messages",
    "read_messages_event",
    "read_messages_request",
]

_TEXT_KEYS = ("system", "messages", "tools", "tool_choice", "output_config", "output_format")
# Tools the client runs (Anthropic's client tools and custom ones): the model only writes their calls.
_CLIENT_TOOL_PREFIXES = ("custom", "bash", "text_editor", "str_replace_editor", "computer", "memory")
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


# -- requests -------------------------------------------------------------------------------


def check_messages_request(payload: dict[str, Any]) -> None:
    messages = payload.get("messages")
    if not (isinstance(messages, list) and messages):
        raise InvalidRequestError("`messages` must be a non-empty list")
    check_stream_flag(payload)
    for name in ("thinking", "metadata"):
        if payload.get(name) is not None and not isinstance(payload[name], dict):
            raise InvalidRequestError(f"`{name}` must be an object")
    thinking = payload.get("thinking") or {}
    check_positive_ints(
        {"max_tokens": payload.get("max_tokens"), "thinking.budget_tokens": thinking.get("budget_tokens")}
    )


def read_messages_request(payload: dict[str, Any]) -> BillableRequest:
    """A Messages request's billable parts: the system prompt and every content block, tool results'
    own blocks included, server tools, and ``max_tokens``."""
    models = models_of(payload)
    media: list[MediaPart] = []
    inline_chars = 0
    cache_1h = _caches_for_an_hour(payload.get("cache_control"))
    blocks: list[tuple[str, Any]] = []
    system = payload.get("system")
    if isinstance(system, list):
        blocks += [(f"system[{j}]", block) for j, block in enumerate(system)]
    messages = payload.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            blocks += [(f"messages[{i}].content[{j}]", block) for j, block in enumerate(content)]
    while blocks:
        where, block = blocks.pop(0)
        if not isinstance(block, dict):
            continue
        cache_1h = cache_1h or _caches_for_an_hour(block.get("cache_control"))
        nested = block.get("content")
        if block.get("type") == "tool_result" and isinstance(nested, list):
            blocks += [(f"{where}.content[{k}]", inner) for k, inner in enumerate(nested)]
            continue
        found, chars = _media_block(where, block)
        if found is not None:
            media.append(found)
            inline_chars += chars
    searches, unbounded = searches_and_tools(payload, models, _read_tool)
    return BillableRequest(
        models=models,
        text_bytes=text_bytes(payload, _TEXT_KEYS, inline_chars),
        messages=len(messages) + (1 if system else 0) if isinstance(messages, list) else 1,
        media=tuple(media),
        searches=searches,
        completion_limit=positive_int(payload.get("max_tokens")),
        cache_write_1h=cache_1h,
        unbounded=unbounded,
    )


def _caches_for_an_hour(control: Any) -> bool:
    return isinstance(control, dict) and control.get("ttl") == "1h"


def _media_block(where: str, block: dict[str, Any]) -> tuple[MediaPart | None, int]:
    kind = block.get("type")
    if kind not in ("image", "document"):
        return None, 0  # text, thinking, tool calls, search results: text the prompt counts as such
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    origin, data = source.get("type"), source.get("data")
    if kind == "image":
        if origin == "base64" and isinstance(data, str):
            return MediaPart("image", where), len(data)
        return MediaPart("image", where, by_url=True), 0  # a URL or an uploaded file
    if origin in ("text", "content"):
        return None, 0  # a plain-text document is prompt text
    if origin == "base64" and isinstance(data, str):
        mime = str(source.get("media_type", ""))
        decoded = DataUrl(mime, data).data() if mime == "application/pdf" else None
        return MediaPart("file", where, pages=pdf_pages(decoded) if decoded else None), len(data)
    return MediaPart("file", where, by_url=True), 0


def _read_tool(where: str, tool: Any) -> SearchAllowance | str | None:
    """Custom and client tools bill nothing of their own; Anthropic's web search is bounded by its
    ``max_uses``; OpenRouter's tools as on chat; other server tools (web fetch, code execution,
    advisor) cannot be bounded."""
    kind = str(tool.get("type", "custom")) if isinstance(tool, dict) else "custom"
    if kind.startswith(_CLIENT_TOOL_PREFIXES):
        return None
    if kind.startswith("web_search"):
        uses = positive_int(tool.get("max_uses")) if isinstance(tool, dict) else None
        if uses is None:
            return f"{where} ({kind} without max_uses)"
        return search_allowance(where, uses, tool if isinstance(tool, dict) else {})
    if kind.startswith("openrouter:"):
        return read_chat_tool(where, tool)
    return f"{where} (server tool {kind!r:.40})"


def prepare_messages(payload: dict[str, Any], limit: int) -> None:
    """``max_tokens`` at what the hold pays for; a thinking budget kept below it, as Anthropic requires."""
    payload["max_tokens"] = limit
    thinking = payload.get("thinking")
    if (
        isinstance(thinking, dict)
        and isinstance(thinking.get("budget_tokens"), int)
        and thinking["budget_tokens"] >= limit
    ):
        payload["thinking"] = {**thinking, "budget_tokens": max(limit - 1, 1)}


def name_messages_user(payload: dict[str, Any], pseudonym: str) -> None:
    """Anthropic names the end user in ``metadata.user_id`` (there is no ``user`` field)."""
    metadata = payload.get("metadata")
    payload["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), "user_id": pseudonym}


# -- responses ------------------------------------------------------------------------------


def read_messages_event(meter: ResponseMeter, event: dict[str, Any], whole: bool) -> None:
    """One stream event by its ``type``, or a whole Message (or error) body."""
    kind = event.get("type")
    if kind == "content_block_delta":
        delta = event.get("delta")
        if isinstance(delta, dict):
            text = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
            if isinstance(text, str) and text:
                meter.add_output(len(text))
    elif kind == "content_block_start":
        chars = _block_chars(event.get("content_block"))
        if chars:
            meter.add_output(chars)
    elif kind == "message_start":
        message = event.get("message")
        if isinstance(message, dict):
            _note_id(meter, message)
            usage = message.get("usage")
            if isinstance(usage, dict):
                meter.take_usage(usage, final=False)
    elif kind == "message_delta":
        delta = event.get("delta")
        _finish(meter, delta.get("stop_reason") if isinstance(delta, dict) else None)
        usage = event.get("usage")
        if isinstance(usage, dict):
            # Cumulative, and added to what message_start said; final, as the output has ended.
            meter.take_usage(usage, final=True, merge=True)
    elif kind == "message_stop":
        meter.done = True
    elif kind == "error":
        error = event.get("error")
        meter.fail(error if isinstance(error, dict) else {"message": "the upstream failed"})
    elif kind == "message" or whole:
        _note_id(meter, event)
        for block in event.get("content") or ():
            chars = _block_chars(block)
            if chars:
                meter.add_output(chars)
        _finish(meter, event.get("stop_reason"))
        usage = event.get("usage")
        if isinstance(usage, dict):
            meter.take_usage(usage, final=True)


def _note_id(meter: ResponseMeter, message: dict[str, Any]) -> None:
    """The generation id and the model that answered, from a Message."""
    if meter.generation_id is None and isinstance(message.get("id"), str):
        meter.generation_id = message["id"]
    if meter.response_model is None and isinstance(message.get("model"), str):
        meter.response_model = message["model"]


def _finish(meter: ResponseMeter, stop_reason: Any) -> None:
    if isinstance(stop_reason, str):
        meter.finish_reason = _STOP_REASONS.get(stop_reason, "content_filter" if stop_reason == "refusal" else "stop")


def _block_chars(block: Any) -> int:
    if not isinstance(block, dict):
        return 0
    chars = sum(len(block[key]) for key in ("text", "thinking", "name") if isinstance(block.get(key), str))
    given = block.get("input")
    if isinstance(given, dict) and given:
        chars += len(json.dumps(given, separators=(",", ":")))
    return chars


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def messages_usage_tokens(usage: dict[str, Any]) -> tuple[int, int] | None:
    """``(input, output)``: Anthropic counts cache writes and reads apart from ``input_tokens``."""
    if not isinstance(usage.get("input_tokens"), int) and not isinstance(usage.get("output_tokens"), int):
        return None
    tokens = sum(
        _count(usage.get(key)) for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return tokens, _count(usage.get("output_tokens"))


def _anthropic_type(error: WattfareError) -> str:
    """Anthropic's error type for one of ours, by what it means (its API's errors page)."""
    if error.status == 402:
        return "billing_error"
    if isinstance(error, AuthError):
        return "authentication_error"
    if isinstance(error, PayloadTooLargeError):
        return "request_too_large"
    if isinstance(error, InvalidRequestError):
        return "invalid_request_error"
    if isinstance(error, RateLimitedError):
        return "rate_limit_error"
    return "api_error"


def _anthropic_error(error: WattfareError) -> bytes:
    body = {"type": "error", "error": {"type": _anthropic_type(error), "code": error.code, "message": error.message}}
    return json.dumps(body, separators=(",", ":")).encode()


def messages_error_body(error: WattfareError) -> bytes:
    return _anthropic_error(error)


def messages_cut_off(error: WattfareError, events: int) -> bytes:
    """Anthropic's ``error`` event: the anthropic SDK raises ``APIStatusError`` on it (it reads named
    events only), with the event's data as the body and our code in its ``error``."""
    return b"event: error\ndata: " + _anthropic_error(error) + b"\n\n"
