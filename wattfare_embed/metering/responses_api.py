"""The Responses API (``POST /responses``) as the proxy sees it.

OpenRouter serves it stateless (reference §1.2): ``store: true``, a ``previous_response_id``, a
``conversation`` and references to stored items are refused here, before anything is held, as
OpenRouter would refuse them. The output limit is ``max_output_tokens`` (reasoning counts within
it). Usage sits on the terminal event (``response.completed``, ``response.incomplete``,
``response.failed``; ``response.done`` in the docs' example) under ``response.usage``, with
``cost`` only when ``usage: {include: true}`` was sent, which the proxy always sends; a missing
cost is unknown. A stream may or may not end with ``[DONE]``.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, RateLimitedError, UpstreamError, WattfareError
from .billable import (
    BillableRequest,
    MediaPart,
    SearchAllowance,
    audio_part,
    file_part,
    image_part,
    models_of,
    positive_int,
    read_chat_tool,
    search_allowance,
    searches_and_tools,
    text_bytes,
    video_part,
)
from .chat_api import check_positive_ints, check_stream_flag
from .output import BYTES_PER_AUDIO_TOKEN, BYTES_PER_IMAGE_TOKEN

if TYPE_CHECKING:
    from .meter import ResponseMeter

__all__ = [
    "check_responses_request",
    "prepare_responses",
    "read_responses_event",
    "read_responses_request",
    "responses_cut_off",
    "responses_usage_tokens",
]

_TEXT_KEYS = ("instructions", "input", "tools", "tool_choice", "text")
_TEXT_PARTS = frozenset({None, "input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text"})
# Tools the client runs: the model only writes their calls, which bill as output.
_CLIENT_TOOLS = frozenset({"function", "custom", "local_shell", "apply_patch", "namespace", "computer_use_preview"})
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "response.done"})
_STATELESS = "OpenRouter's Responses API is stateless: send the whole conversation in `input`"


# -- requests -------------------------------------------------------------------------------


def check_responses_request(payload: dict[str, Any]) -> None:
    given = payload.get("input")
    if not (isinstance(given, str) and given) and not (isinstance(given, list) and given):
        raise InvalidRequestError("`input` must be a non-empty string or list")
    if payload.get("store") is True:
        raise InvalidRequestError(f"`store: true` is not supported; {_STATELESS}")
    for name in ("previous_response_id", "conversation"):
        if payload.get(name) is not None:
            raise InvalidRequestError(f"`{name}` is not supported; {_STATELESS}")
    for index, item in enumerate(given if isinstance(given, list) else ()):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            # The AI SDK sends these for earlier turns unless told `providerOptions: {openai: {store: false}}`.
            raise InvalidRequestError(f"input[{index}] refers to a stored item; {_STATELESS} (with store: false)")
    check_stream_flag(payload)
    for name in ("reasoning", "usage", "text"):
        if payload.get(name) is not None and not isinstance(payload[name], dict):
            raise InvalidRequestError(f"`{name}` must be an object")
    reasoning = payload.get("reasoning") or {}
    check_positive_ints(
        {
            "max_output_tokens": payload.get("max_output_tokens"),
            "max_tool_calls": payload.get("max_tool_calls"),
            "reasoning.max_tokens": reasoning.get("max_tokens"),
        }
    )


def read_responses_request(payload: dict[str, Any]) -> BillableRequest:
    """A Responses request's billable parts: ``input`` items and their content parts, tools, limits."""
    models = models_of(payload)
    given = payload.get("input")
    items = given if isinstance(given, list) else []
    media: list[MediaPart] = []
    inline_chars = 0
    cache_1h = False
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        # A message's content, or a function call's output given as content parts.
        content = item.get("content") if "content" in item else item.get("output")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(part, dict):
                continue
            control = part.get("cache_control")
            cache_1h = cache_1h or (isinstance(control, dict) and control.get("ttl") == "1h")
            found, chars = _media_part(f"input[{i}].content[{j}]", part)
            if found is not None:
                media.append(found)
                inline_chars += chars
    searches, unbounded = searches_and_tools(payload, models, _tool_reader(positive_int(payload.get("max_tool_calls"))))
    modalities = payload.get("modalities")
    return BillableRequest(
        models=models,
        text_bytes=text_bytes(payload, _TEXT_KEYS, inline_chars),
        messages=max(len(items), 1) + (1 if payload.get("instructions") else 0),
        media=tuple(media),
        searches=searches,
        completion_limit=positive_int(payload.get("max_output_tokens")),
        output_modalities=frozenset(
            m for m in (modalities if isinstance(modalities, list) else ()) if m in ("image", "audio")
        ),
        cache_write_1h=cache_1h,
        unbounded=unbounded,
    )


def _media_part(where: str, part: dict[str, Any]) -> tuple[MediaPart | None, int]:
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return None, 0
    if kind == "input_image":
        url = part.get("image_url")
        return image_part(where, url if isinstance(url, str) else "")  # a file_id is a reference: unsized
    if kind == "input_file":
        data = part.get("file_data") or part.get("file_url")
        return file_part(where, data if isinstance(data, str) else "")
    if kind == "input_audio":
        audio = part.get("input_audio")
        audio = audio if isinstance(audio, dict) else {}
        return audio_part(where, audio.get("data"), audio.get("format"))
    if kind == "input_video":
        url = part.get("video_url")
        return video_part(where, url if isinstance(url, str) else "")
    return MediaPart(str(kind)[:40], where), 0  # a part we do not know cannot be sized


def _tool_reader(max_tool_calls: int | None) -> Any:
    """Client tools bill nothing of their own; OpenAI's web search tool is bounded by the request's
    ``max_tool_calls``; OpenRouter's tools as on chat; any other server tool is unbounded."""

    def read(where: str, tool: Any) -> SearchAllowance | str | None:
        kind = tool.get("type", "function") if isinstance(tool, dict) else "function"
        if kind in _CLIENT_TOOLS:
            return None
        if isinstance(kind, str) and kind.startswith("web_search"):
            if max_tool_calls is None:
                return f"{where} ({kind} without the request's max_tool_calls)"
            return search_allowance(where, max_tool_calls, tool)
        return read_chat_tool(where, tool)

    return read


def prepare_responses(payload: dict[str, Any], limit: int) -> None:
    """``max_output_tokens`` (reasoning within it) at what the hold pays for, and the usage's cost asked for."""
    payload["max_output_tokens"] = limit
    reasoning = payload.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("max_tokens"), int):
        payload["reasoning"] = {**reasoning, "max_tokens": min(reasoning["max_tokens"], limit)}
    # Without it OpenRouter may leave `cost` out of the usage (a LiteLLM fix found every response at $0).
    usage = payload.get("usage")
    payload["usage"] = {**(usage if isinstance(usage, dict) else {}), "include": True}


# -- responses ------------------------------------------------------------------------------


def read_responses_event(meter: ResponseMeter, event: dict[str, Any], whole: bool) -> None:
    """One stream event by its ``type``, or a whole Response object."""
    kind = event.get("type")
    if whole or not isinstance(kind, str):
        _read_response(meter, event, whole=True)
        return
    if kind.endswith(".delta"):  # text, reasoning, summaries, refusals, tool arguments, code, audio
        delta = event.get("delta")
        if isinstance(delta, str) and delta:
            if "audio" in kind and "transcript" not in kind:
                meter.add_output(0, math.ceil(len(delta) * 3 // 4 / BYTES_PER_AUDIO_TOKEN))
            else:
                meter.add_output(len(delta))
    elif kind == "response.image_generation_call.partial_image":
        image = event.get("partial_image_b64")
        if isinstance(image, str):
            meter.add_output(0, math.ceil(len(image) * 3 // 4 / BYTES_PER_IMAGE_TOKEN))
    elif kind == "response.output_item.added":
        item = event.get("item")
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name:
            meter.add_output(len(name))
    elif kind in _TERMINAL:
        response = event.get("response")
        if isinstance(response, dict):
            _read_response(meter, response, whole=False)
        meter.done = True
    elif kind == "response.created":
        response = event.get("response")
        if isinstance(response, dict):
            _note(meter, response)
    elif kind == "error":
        error = event.get("error")
        meter.fail(error if isinstance(error, dict) else {"code": event.get("code"), "message": event.get("message")})


def _note(meter: ResponseMeter, response: dict[str, Any]) -> None:
    """The generation id and the model that answered, from a Response object."""
    if meter.generation_id is None and isinstance(response.get("id"), str):
        meter.generation_id = response["id"]
    if meter.response_model is None and isinstance(response.get("model"), str):
        meter.response_model = response["model"]


def _read_response(meter: ResponseMeter, response: dict[str, Any], *, whole: bool) -> None:
    _note(meter, response)
    status = response.get("status")
    error = response.get("error")
    if status == "failed" or (whole and isinstance(error, dict)):
        meter.fail(error if isinstance(error, dict) else {"message": "the response failed"})
    elif status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        meter.finish_reason = "length" if reason == "max_output_tokens" else "content_filter"
    elif isinstance(status, str):
        meter.finish_reason = "stop"
    if whole:  # a body: its output was not streamed, so it is read here
        for item in response.get("output") or ():
            chars = _item_chars(item)
            if chars:
                meter.add_output(chars)
    usage = response.get("usage")
    if isinstance(usage, dict):
        meter.take_usage(usage, final=True)


def _item_chars(item: Any) -> int:
    if not isinstance(item, dict):
        return 0
    chars = sum(len(item[key]) for key in ("name", "arguments", "input", "code") if isinstance(item.get(key), str))
    for key in ("content", "summary"):
        for part in item.get(key) or ():
            if isinstance(part, dict):
                chars += sum(len(part[field]) for field in ("text", "refusal") if isinstance(part.get(field), str))
    return chars


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def responses_usage_tokens(usage: dict[str, Any]) -> tuple[int, int] | None:
    """``(input_tokens, output_tokens)``; reasoning is within the output tokens."""
    if not isinstance(usage.get("input_tokens"), int):
        return None
    return _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))


def _error_type(error: WattfareError) -> str:
    # OpenAI's names: the AI SDK reads `insufficient_quota` as not to be retried, whatever else it sees.
    if error.status == 402:
        return "insufficient_quota"
    if isinstance(error, RateLimitedError):
        return "rate_limit_exceeded"
    return "server_error" if isinstance(error, UpstreamError) else "invalid_request_error"


def responses_cut_off(error: WattfareError, events: int) -> bytes:
    """An ``error`` event that every client surfaces: the openai SDK raises ``APIError`` for an event
    with an ``error`` object (with it as the body, our code in it), the AI SDK's Responses model
    emits an error part for ``type: "error"`` (nested or flat, with a ``sequence_number``); the flat
    fields make it OpenAI's own ``ResponseErrorEvent`` too."""
    code, message = error.code, error.message
    event = {
        "type": "error",
        "sequence_number": events,
        "code": code,
        "message": message,
        "param": None,
        "error": {"type": _error_type(error), "code": code, "message": message, "param": None},
    }
    return b"event: error\ndata: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
