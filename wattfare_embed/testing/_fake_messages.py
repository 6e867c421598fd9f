"""Anthropic Messages (`POST /messages`), the skin OpenRouter serves for the anthropic SDK.

A request is read as the chat completion it amounts to (`chat_view`) and generated as chat is;
the answer is written back in Anthropic's shapes. As OpenRouter's spec has it (reference §1.3),
the streamed usage (`message_delta.usage`) carries token counts but no `cost`, which only the
non-streaming body states; errors are `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ._fake_reply import OutputPiece, ReplyPlan
from ._fake_sse import PROCESSING_COMMENT, named_event
from ._fake_wire import JSONObject, OpenRouterError, anthropic_error_type, usd

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def chat_view(body: JSONObject) -> JSONObject:
    """The chat completion request an Anthropic Messages request amounts to."""
    if not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool):
        raise OpenRouterError(400, "max_tokens: Field required")
    messages: list[JSONObject] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        messages.append({"role": "system", "content": [_part(block) for block in system if isinstance(block, dict)]})
    given = body.get("messages")
    if not isinstance(given, list) or not given:
        raise OpenRouterError(400, "messages: at least one message is required")
    for message in given:
        if isinstance(message, dict):
            messages.extend(_messages(message))
    view: JSONObject = {
        key: body[key] for key in ("model", "models", "provider", "plugins", "cache_control") if key in body
    }
    view.update(messages=messages, max_tokens=body["max_tokens"])
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        view["reasoning"] = {"max_tokens": thinking.get("budget_tokens")}
    if isinstance(body.get("tools"), list):
        view["tools"] = [_tool(tool) for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        view["tool_choice"] = (
            {"type": "function", "function": {"name": choice.get("name")}}
            if kind == "tool"
            else {"any": "required"}.get(str(kind), kind)
        )
    config = body.get("output_config")
    spec = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        view["response_format"] = {"type": "json_schema", "json_schema": {"schema": spec.get("schema")}}
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        view["user"] = metadata["user_id"]
    return view


def _messages(message: JSONObject) -> list[JSONObject]:
    """One Anthropic message as chat messages: tool results become `tool` messages of their own."""
    role, content = message.get("role", "user"), message.get("content")
    if not isinstance(content, list):
        return [{"role": role, "content": content}]
    blocks = [block for block in content if isinstance(block, dict)]
    out: list[JSONObject] = []
    for block in blocks:
        if block.get("type") == "tool_result":
            result = block.get("content")
            text = result if isinstance(result, str) else " ".join(str(part.get("text", "")) for part in result or [])
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
    calls = [
        {
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input"))},
        }
        for block in blocks
        if block.get("type") == "tool_use"
    ]
    parts = [_part(block) for block in blocks if block.get("type") not in ("tool_use", "tool_result", "thinking")]
    if parts or calls:
        chat: JSONObject = {"role": role, "content": parts}
        if calls:
            chat["tool_calls"] = calls
        out.insert(0, chat)
    return out


def _part(block: JSONObject) -> JSONObject:
    kind = block.get("type")
    control = {"cache_control": block["cache_control"]} if isinstance(block.get("cache_control"), dict) else {}
    if kind == "text":
        return {"type": "text", "text": block.get("text", ""), **control}
    source: JSONObject = block["source"] if isinstance(block.get("source"), dict) else {}
    url = (
        source.get("url")
        if source.get("type") == "url"
        else f"data:{source.get('media_type')};base64,{source.get('data')}"
    )
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": url}, **control}
    if kind == "document" and source.get("type") == "text":
        return {"type": "text", "text": source.get("data", ""), **control}
    if kind == "document":
        return {"type": "file", "file": {"file_data": url}, **control}
    return {"type": kind}


def _tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool
    kind = str(tool.get("type", "custom"))
    if kind == "custom":
        function = {
            "name": tool.get("name"),
            "description": tool.get("description"),
            "parameters": tool.get("input_schema"),
        }
        return {"type": "function", "function": function}
    if kind.startswith("web_search_"):
        return {"type": "openrouter:web_search", "parameters": {"max_uses": tool.get("max_uses")}}
    return tool


class MessagesWire:
    """`message_start`, a content block per kind of piece (thinking, then text or a tool use) with its
    deltas, `message_delta` with the stop reason and the usage (no cost), then `message_stop`."""

    def __init__(self, plan: ReplyPlan) -> None:
        self._plan = plan
        self._blocks: list[JSONObject] = []
        self._open_kind: str | None = None

    # -- the stream -------------------------------------------------------------------------

    def opening(self) -> list[bytes]:
        message = self._message([], None, usage=True)
        message["usage"] = {**self._usage(cost=False), "output_tokens": 0}
        return [PROCESSING_COMMENT, named_event("message_start", {"type": "message_start", "message": message}), _PING]

    def piece(self, piece: OutputPiece) -> list[bytes]:
        kind = "thinking" if piece.kind == "reasoning" else "tool_use" if self._plan.tool_call else "text"
        frames = self._close() if self._open_kind not in (None, kind) else []
        if self._open_kind is None:
            frames.append(self._open(kind))
        block, index = self._blocks[-1], len(self._blocks) - 1
        if kind == "thinking":
            block["thinking"] += piece.text
            delta = {"type": "thinking_delta", "thinking": piece.text}
        elif kind == "tool_use":
            block["partial_json"] += piece.text
            delta = {"type": "input_json_delta", "partial_json": piece.text}
        else:
            block["text"] += piece.text
            delta = {"type": "text_delta", "text": piece.text}
        frames.append(
            named_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )
        return frames

    def finish(self) -> list[bytes]:
        return self._close()

    def closing(self, *, usage: bool) -> list[bytes]:
        delta: JSONObject = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop_reason(), "stop_sequence": None},
        }
        if usage:
            delta["usage"] = self._usage(cost=False)
        return [named_event("message_delta", delta), named_event("message_stop", {"type": "message_stop"})]

    def error(self, error: JSONObject) -> bytes:
        return named_event("error", _error_body(error))

    # -- the body ---------------------------------------------------------------------------

    def body(
        self, pieces: list[OutputPiece], finish_reason: str | None, *, usage: bool, error: JSONObject | None
    ) -> JSONObject:
        if error is not None:
            return _error_body(error)
        for piece in pieces:
            self.piece(piece)
        self._close()
        return self._message(self._blocks, self._stop_reason() if finish_reason else None, usage=usage)

    # -- blocks -----------------------------------------------------------------------------

    def _open(self, kind: str) -> bytes:
        block: JSONObject
        if kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        elif kind == "tool_use":
            call = self._plan.tool_call
            assert call is not None
            block = {
                "type": "tool_use",
                "id": "toolu_" + call.id.removeprefix("call_"),
                "name": call.name,
                "input": {},
                "partial_json": "",
            }
        else:
            block = {"type": "text", "text": ""}
        self._blocks.append(block)
        self._open_kind = kind
        start = {key: value for key, value in block.items() if key != "partial_json"}
        payload = {"type": "content_block_start", "index": len(self._blocks) - 1, "content_block": start}
        return named_event("content_block_start", payload)

    def _close(self) -> list[bytes]:
        if self._open_kind is None:
            return []
        block, index = self._blocks[-1], len(self._blocks) - 1
        frames = []
        if self._open_kind == "thinking":
            block["signature"] = hashlib.sha256(block["thinking"].encode()).hexdigest()
            delta = {"type": "signature_delta", "signature": block["signature"]}
            frames.append(
                named_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        self._open_kind = None
        frames.append(named_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        return frames

    def _stop_reason(self) -> str:
        return _STOP_REASONS.get(self._plan.finish_reason, "end_turn")

    def _message(self, blocks: list[JSONObject], stop_reason: str | None, *, usage: bool) -> JSONObject:
        generation = self._plan.generation
        content = []
        for block in blocks:
            if block["type"] == "tool_use":
                arguments = json.loads(block["partial_json"] or "{}")
                block = {**{k: v for k, v in block.items() if k != "partial_json"}, "input": arguments}
            content.append(block)
        message: JSONObject = {
            "id": generation.id,
            "type": "message",
            "role": "assistant",
            "model": generation.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }
        if usage:
            message["usage"] = self._usage(cost=True)
        return message

    def _usage(self, *, cost: bool) -> JSONObject:
        generation = self._plan.generation
        chat = generation.usage_object()
        writes = chat["prompt_tokens_details"]["cache_write_tokens"]
        usage: JSONObject = {
            # Anthropic counts cache writes apart from the other input tokens.
            "input_tokens": chat["prompt_tokens"] - writes,
            "cache_creation_input_tokens": writes,
            "cache_read_input_tokens": 0,
            "output_tokens": chat["completion_tokens"],
        }
        if chat.get("server_tool_use_details"):
            usage["server_tool_use"] = {"web_search_requests": chat["server_tool_use_details"]["web_search_requests"]}
        if cost:
            usage.update(cost=usd(generation.total_cost), is_byok=chat["is_byok"], cost_details=chat["cost_details"])
        return usage


_PING = named_event("ping", {"type": "ping"})


def _error_body(error: JSONObject) -> JSONObject:
    code = error.get("code")
    status = code if isinstance(code, int) else 500
    error_type = (error.get("metadata") or {}).get("error_type")
    body: JSONObject = {"type": anthropic_error_type(status), "message": error.get("message", "")}
    if error_type:
        body["error_type"] = error_type
    return {"type": "error", "error": body}
