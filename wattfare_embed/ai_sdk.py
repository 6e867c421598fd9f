"""``useChat`` against a Python route: the Vercel AI SDK's UI message stream from a metered reply.

```python
from wattfare_embed.ai_sdk import UIMessageStreamResponse, to_openai_messages

@app.post("/api/chat")
async def chat(request: Request, ai: CurrentWattfareUser) -> UIMessageStreamResponse:
    body = await request.json()
    completion = ai.openai().chat.completions.create(
        model="openai/gpt-4o-mini", messages=to_openai_messages(body["messages"]), stream=True
    )
    return UIMessageStreamResponse(completion, user=ai)
```

The stream speaks protocol ``v1`` (``ai`` 5 and later): ``start``, ``start-step``, text, reasoning and
tool-call parts, ``finish-step``, ``finish``, ``[DONE]``, with no keys beyond the protocol's own.
The reply's cost and the user's budget after it ride in ``messageMetadata`` under ``wattfare``.
A not-connected, over-budget or revoked error, before or during the reply, is an ``error`` chunk
whose text is our JSON error body, which the JS helpers (``toWattfareError``) turn back into the
typed error.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from ._ui_messages import to_openai_messages
from .client import to_wattfare_error
from .errors import UpstreamError, WattfareError
from .money import micros_from_usd, usd_number

if TYPE_CHECKING:
    from .client import WattfareUser

__all__ = ["UI_MESSAGE_STREAM_HEADERS", "UIMessageStreamResponse", "to_openai_messages", "ui_message_stream"]

logger = logging.getLogger("wattfare_embed.ai_sdk")

UI_MESSAGE_STREAM_HEADERS: Mapping[str, str] = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
    "error": "error",
}

Completion = Awaitable[AsyncIterable[Any]] | AsyncIterable[Any]


def _sse(chunk: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def _as_dict(value: Any) -> dict[str, Any]:
    """An openai SDK chunk (a pydantic model, extra fields such as ``usage.cost`` kept) as a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    return dict(dump()) if callable(dump) else {}


class _Parts:
    """The open text or reasoning part, the tool calls seen so far, and the chunks they make."""

    def __init__(self) -> None:
        self.open: tuple[str, str] | None = None  # (kind, id)
        self.count = 0
        self.stepped = False
        self.tools: dict[int, dict[str, Any]] = {}

    def _step(self) -> list[dict[str, Any]]:
        if self.stepped:
            return []
        self.stepped = True
        return [{"type": "start-step"}]

    def close(self) -> list[dict[str, Any]]:
        if self.open is None:
            return []
        kind, part_id = self.open
        self.open = None
        return [{"type": f"{kind}-end", "id": part_id}]

    def delta(self, kind: str, text: str) -> list[dict[str, Any]]:
        chunks = self._step()
        if self.open is None or self.open[0] != kind:
            chunks += self.close()
            self.count += 1
            self.open = (kind, f"{kind}-{self.count}")
            chunks.append({"type": f"{kind}-start", "id": self.open[1]})
        chunks.append({"type": f"{kind}-delta", "id": self.open[1], "delta": text})
        return chunks

    def tool_delta(self, call: Mapping[str, Any]) -> list[dict[str, Any]]:
        index = call.get("index", 0)
        function = call.get("function") or {}
        tool = self.tools.get(index)
        chunks = self._step()
        if tool is None:
            chunks += self.close()
            tool = {"id": call.get("id") or f"call-{index}", "name": function.get("name") or "", "arguments": ""}
            self.tools[index] = tool
            chunks.append({"type": "tool-input-start", "toolCallId": tool["id"], "toolName": tool["name"]})
        arguments = function.get("arguments") or ""
        if arguments:
            tool["arguments"] += arguments
            chunks.append({"type": "tool-input-delta", "toolCallId": tool["id"], "inputTextDelta": arguments})
        return chunks

    def finish_tools(self) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for tool in self.tools.values():
            try:
                arguments = json.loads(tool["arguments"] or "{}")
            except ValueError:
                chunks.append(
                    {
                        "type": "tool-input-error",
                        "toolCallId": tool["id"],
                        "toolName": tool["name"],
                        "input": tool["arguments"],
                        "errorText": "the model sent tool arguments that are not JSON",
                    }
                )
                continue
            chunks.append(
                {"type": "tool-input-available", "toolCallId": tool["id"], "toolName": tool["name"], "input": arguments}
            )
        self.tools = {}
        return chunks

    def end_step(self) -> list[dict[str, Any]]:
        chunks = self.close() + self.finish_tools()
        if self.stepped:
            chunks.append({"type": "finish-step"})
            self.stepped = False
        return chunks


async def _budget(user: WattfareUser | None, cost_micros: int | None) -> dict[str, Any] | None:
    if user is None:
        return None
    status = await user.status()
    return {
        "wattfare": {
            "costUsd": None if cost_micros is None else usd_number(cost_micros),
            "spentUsd": usd_number(status.spent),
            "monthlyUsd": usd_number(status.monthly_cap),
            # Left means the cap less what was charged; money held by other requests in flight is not spent.
            "remainingUsd": usd_number(max(0, status.monthly_cap - status.spent)) if status.connected else 0.0,
        }
    }


def _error_chunk(error: WattfareError) -> dict[str, Any]:
    return {"type": "error", "errorText": json.dumps(error.to_json(), ensure_ascii=False)}


def _typed(exc: Exception) -> WattfareError:
    error = to_wattfare_error(exc)
    if error is None:
        # Not ours: say nothing of it to the browser (it could carry upstream details), log it here.
        logger.exception("the model call failed")
        return UpstreamError("the model call failed")
    logger.info("reply ended with %s: %s", error.code, error.message)  # the developer's message
    return error


async def ui_message_stream(
    completion: Completion, *, user: WattfareUser | None = None, message_id: str | None = None
) -> AsyncIterator[bytes]:
    """The UI message stream (SSE bytes) of a streamed chat completion.

    ``completion`` is what ``client.chat.completions.create(..., stream=True)`` returns, awaited
    or not (not awaited, an error raised before the reply starts becomes an ``error`` chunk too).
    With ``user``, the finish chunk's ``messageMetadata.wattfare`` carries the reply's cost and the
    user's budget after it.
    """
    start: dict[str, Any] = {"type": "start"}
    if message_id is not None:
        start["messageId"] = message_id
    yield _sse(start)
    parts = _Parts()
    stream: Any = None
    cost: int | None = None
    finish_reason = "stop"
    try:
        stream = await completion if inspect.isawaitable(completion) else completion
        async for raw in stream:
            chunk = _as_dict(raw)
            usage = chunk.get("usage")
            if isinstance(usage, Mapping) and isinstance(usage.get("cost"), int | float):
                cost = micros_from_usd(usage["cost"])
            for choice in chunk.get("choices") or []:
                delta = _as_dict(choice.get("delta") or {})
                if delta.get("reasoning"):
                    for out in parts.delta("reasoning", str(delta["reasoning"])):
                        yield _sse(out)
                if delta.get("content"):
                    for out in parts.delta("text", str(delta["content"])):
                        yield _sse(out)
                for call in delta.get("tool_calls") or []:
                    for out in parts.tool_delta(_as_dict(call)):
                        yield _sse(out)
                if choice.get("finish_reason"):
                    finish_reason = _FINISH_REASONS.get(str(choice["finish_reason"]), "other")
    except Exception as exc:  # a cut-off at the cap, a revoke, not connected, the upstream failing
        error = _typed(exc)
        for out in parts.end_step():
            yield _sse(out)
        # useChat stops reading at an error chunk, so the budget goes first.
        metadata = await _budget(user, cost) if parts.count or parts.tools else None
        if metadata is not None:
            yield _sse({"type": "message-metadata", "messageMetadata": metadata})
        yield _sse(_error_chunk(error))
        yield _sse({"type": "finish", "finishReason": "error"})
        yield b"data: [DONE]\n\n"
        return
    finally:
        await _close(completion, stream)
    for out in parts.end_step():
        yield _sse(out)
    finish: dict[str, Any] = {"type": "finish", "finishReason": finish_reason}
    metadata = await _budget(user, cost)
    if metadata is not None:
        finish["messageMetadata"] = metadata
    yield _sse(finish)
    yield b"data: [DONE]\n\n"


async def _close(completion: Completion, stream: Any) -> None:
    """Close the upstream stream (the browser may have left mid-reply: stop its billing now)."""
    if stream is None:
        if inspect.iscoroutine(completion):
            completion.close()  # never started: no "coroutine was never awaited" warning
        return
    close = getattr(stream, "close", None) or getattr(stream, "aclose", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result


class UIMessageStreamResponse(StreamingResponse):
    """A Starlette (and FastAPI) response streaming ``ui_message_stream(completion, ...)``.

    For Litestar: ``Stream(ui_message_stream(...), headers=UI_MESSAGE_STREAM_HEADERS)``.
    """

    def __init__(
        self,
        completion: Completion,
        *,
        user: WattfareUser | None = None,
        message_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        merged = {k: v for k, v in UI_MESSAGE_STREAM_HEADERS.items() if k != "content-type"}
        merged.update(headers or {})
        super().__init__(
            ui_message_stream(completion, user=user, message_id=message_id),
            headers=merged,
            media_type="text/event-stream",
            background=background,
        )
