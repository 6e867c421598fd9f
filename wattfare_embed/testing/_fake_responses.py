"""The Responses API (`POST /responses`) as OpenRouter serves it: stateless, OpenAI's event names.

A request is read as the chat completion it amounts to (`chat_view`), so it is priced, checked
and generated exactly as chat is; the answer is written back as Response objects. OpenRouter's
own quirks are kept: `store: true`, a `previous_response_id` and stored-item references are
refused with a 400 (reference §1.2), and `usage.cost` is left out unless the request sent
`usage: {include: true}` (a LiteLLM fix found it missing otherwise).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ._fake_reply import OutputPiece, ReplyPlan
from ._fake_sse import DONE_EVENT, PROCESSING_COMMENT, named_event
from ._fake_wire import JSONObject, OpenRouterError, usd

_PARTS = {"input_text": "text", "output_text": "text", "text": "text"}
# What a mid-generation error's code becomes on this API (docs: responses/error-handling).
_RESPONSES_CODES = {400: "invalid_prompt", 403: "image_content_policy_violation", 429: "rate_limit_exceeded"}


def chat_view(body: JSONObject) -> JSONObject:
    """The chat completion request a Responses request amounts to."""
    if body.get("store") is True:
        raise OpenRouterError(400, "store: true is not supported: the Responses API is stateless")
    if body.get("previous_response_id") is not None:
        raise OpenRouterError(400, "previous_response_id is not supported: send the whole conversation in `input`")
    messages: list[JSONObject] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    given = body.get("input")
    if isinstance(given, str) and given:
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list) and given:
        messages.extend(_message(item) for item in given if isinstance(item, dict) and item.get("type") != "reasoning")
    else:
        raise OpenRouterError(400, "input must be a non-empty string or array")
    view: JSONObject = {
        key: body[key] for key in ("model", "models", "provider", "plugins", "reasoning", "user") if key in body
    }
    view["messages"] = messages
    if body.get("max_output_tokens") is not None:
        view["max_tokens"] = body["max_output_tokens"]
    if isinstance(body.get("tools"), list):
        view["tools"] = [_tool(tool) for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        view["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        view["tool_choice"] = choice
    text = body.get("text")
    spec = text.get("format") if isinstance(text, dict) else None
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        view["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": spec.get("name"), "schema": spec.get("schema")},
        }
    elif isinstance(spec, dict) and spec.get("type") == "json_object":
        view["response_format"] = {"type": "json_object"}
    return view


def _message(item: JSONObject) -> JSONObject:
    kind = item.get("type", "message")
    if kind == "item_reference":
        raise OpenRouterError(400, "item_reference needs stored responses: the Responses API is stateless")
    if kind == "function_call":
        call = {"name": item.get("name"), "arguments": item.get("arguments", "")}
        return {"role": "assistant", "tool_calls": [{"id": item.get("call_id"), "type": "function", "function": call}]}
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output", "")}
    content = item.get("content")
    if isinstance(content, list):
        content = [_part(part) for part in content if isinstance(part, dict)]
    return {"role": item.get("role", "user"), "content": content}


def _part(part: JSONObject) -> JSONObject:
    kind = part.get("type")
    if kind in _PARTS:
        return {"type": "text", "text": part.get("text", ""), **_cache_control(part)}
    if kind == "input_image":
        return {"type": "image_url", "image_url": {"url": part.get("image_url") or part.get("file_id") or ""}}
    if kind == "input_file":
        return {"type": "file", "file": {"file_data": part.get("file_data") or part.get("file_url") or ""}}
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": part.get("input_audio") or {}}
    return {"type": kind}


def _cache_control(part: JSONObject) -> JSONObject:
    return {"cache_control": part["cache_control"]} if isinstance(part.get("cache_control"), dict) else {}


def _tool(tool: Any) -> Any:
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" not in tool:
        function = {key: tool[key] for key in ("name", "description", "parameters") if key in tool}
        return {"type": "function", "function": function}
    return tool


def _item_id(prefix: str, generation_id: str, index: int) -> str:
    return f"{prefix}_{hashlib.sha256(f'{generation_id}/{index}'.encode()).hexdigest()[:24]}"


class ResponsesWire:
    """Response objects: `response.created`, one output item per kind of piece (reasoning, then the
    message or the function call) with its deltas, then `response.completed` or `response.incomplete`
    carrying the usage, and `[DONE]` (the docs' example ends so; OpenAI's stream does not)."""

    def __init__(self, plan: ReplyPlan, body: JSONObject, *, done_marker: bool = True) -> None:
        self._plan = plan
        self._request = body
        self._done_marker = done_marker
        self._sequence = 0
        self._items: list[JSONObject] = []  # output items, the last one open while it streams
        self._open_kind: str | None = None

    # -- the stream -------------------------------------------------------------------------

    def opening(self) -> list[bytes]:
        created = self._response("in_progress", [], usage=False)
        return [
            PROCESSING_COMMENT,
            self._event("response.created", response=created),
            self._event("response.in_progress", response=created),
        ]

    def piece(self, piece: OutputPiece) -> list[bytes]:
        kind = "reasoning" if piece.kind == "reasoning" else "function_call" if self._plan.tool_call else "message"
        frames = self._close() if self._open_kind not in (None, kind) else []
        if self._open_kind is None:
            frames += self._open(kind)
        item, index = self._items[-1], len(self._items) - 1
        if kind == "reasoning":
            item["content"][0]["text"] += piece.text
            frames.append(
                self._event(
                    "response.reasoning_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=piece.text,
                )
            )
        elif kind == "function_call":
            item["arguments"] += piece.text
            frames.append(
                self._event(
                    "response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece.text
                )
            )
        else:
            item["content"][0]["text"] += piece.text
            frames.append(
                self._event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=piece.text,
                    logprobs=[],
                )
            )
        return frames

    def finish(self) -> list[bytes]:
        return self._close()

    def closing(self, *, usage: bool) -> list[bytes]:
        status = "incomplete" if self._plan.finish_reason == "length" else "completed"
        response = self._response(status, self._items, usage=usage)
        terminal = self._event(f"response.{status}", response=response)
        return [terminal, DONE_EVENT] if self._done_marker else [terminal]

    def error(self, error: JSONObject) -> bytes:
        response = self._response("failed", self._items, usage=True)
        code = error.get("code")
        mapped = _RESPONSES_CODES.get(code, "server_error") if isinstance(code, int) else str(code)
        response["error"] = {"code": mapped, "message": error.get("message", "")}
        response["error_type"] = (error.get("metadata") or {}).get("error_type", "server")
        return self._event("response.failed", response=response)

    # -- the body ---------------------------------------------------------------------------

    def body(
        self, pieces: list[OutputPiece], finish_reason: str | None, *, usage: bool, error: JSONObject | None
    ) -> JSONObject:
        for piece in pieces:
            self.piece(piece)
        self._close()
        if error is not None:
            failed = self._response("failed", self._items, usage=usage)
            failed["error"] = {"code": "server_error", "message": error.get("message", "")}
            return failed
        status = "incomplete" if finish_reason in ("length", None) else "completed"
        return self._response(status, self._items, usage=usage)

    # -- items ------------------------------------------------------------------------------

    def _open(self, kind: str) -> list[bytes]:
        generation_id, index = self._plan.generation.id, len(self._items)
        item: JSONObject
        if kind == "reasoning":
            item = {
                "type": "reasoning",
                "id": _item_id("rs", generation_id, index),
                "summary": [],
                "content": [{"type": "reasoning_text", "text": ""}],
            }
        elif kind == "function_call":
            call = self._plan.tool_call
            assert call is not None
            item = {
                "type": "function_call",
                "id": _item_id("fc", generation_id, index),
                "call_id": call.id,
                "name": call.name,
                "arguments": "",
                "status": "in_progress",
            }
        else:
            item = {
                "type": "message",
                "id": _item_id("msg", generation_id, index),
                "status": "in_progress",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}],
            }
        self._items.append(item)
        self._open_kind = kind
        added = {**item, "content": []} if kind == "message" else item
        frames = [self._event("response.output_item.added", output_index=index, item=added)]
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            frames.append(
                self._event(
                    "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        return frames

    def _close(self) -> list[bytes]:
        if self._open_kind is None:
            return []
        item, index, kind = self._items[-1], len(self._items) - 1, self._open_kind
        self._open_kind = None
        frames = []
        if kind == "reasoning":
            text = item["content"][0]["text"]
            frames.append(
                self._event(
                    "response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0, text=text
                )
            )
        elif kind == "function_call":
            item["status"] = "completed"
            frames.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        else:
            item["status"] = "completed"
            part = item["content"][0]
            frames.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            )
            frames.append(
                self._event(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        frames.append(self._event("response.output_item.done", output_index=index, item=item))
        return frames

    def _response(self, status: str, output: list[JSONObject], *, usage: bool) -> JSONObject:
        plan, request = self._plan, self._request
        generation = plan.generation
        response: JSONObject = {
            "id": generation.id,
            "object": "response",
            "created_at": plan.created,
            "model": generation.model,
            "status": status,
            "output": [dict(item) for item in output],
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": request.get("reasoning"),
            "store": False,
            "temperature": request.get("temperature"),
            "text": request.get("text") or {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools", []),
            "top_p": request.get("top_p"),
            "truncation": "disabled",
            "user": request.get("user"),
            "metadata": request.get("metadata") or {},
            "usage": self._usage() if usage and status != "in_progress" else None,
        }
        return response

    def _usage(self) -> JSONObject:
        """The Responses usage (§1.2): chat's counts under other names, `cost` only when asked for."""
        generation = self._plan.generation
        chat = generation.usage_object()
        details = chat["cost_details"]
        usage: JSONObject = {
            "input_tokens": chat["prompt_tokens"],
            "input_tokens_details": {
                "cached_tokens": 0,
                "cache_write_tokens": chat["prompt_tokens_details"]["cache_write_tokens"],
            },
            "output_tokens": chat["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": chat["completion_tokens_details"]["reasoning_tokens"]},
            "total_tokens": chat["total_tokens"],
            "is_byok": chat["is_byok"],
        }
        wanted = self._request.get("usage")
        if isinstance(wanted, dict) and wanted.get("include") is True:
            usage["cost"] = usd(generation.total_cost)
            usage["cost_details"] = {
                "upstream_inference_cost": details["upstream_inference_cost"],
                "upstream_inference_input_cost": details["upstream_inference_prompt_cost"],
                "upstream_inference_output_cost": details["upstream_inference_completions_cost"],
            }
        return usage

    def _event(self, kind: str, **fields: Any) -> bytes:
        frame = named_event(kind, {"type": kind, "sequence_number": self._sequence, **fields})
        self._sequence += 1
        return frame
