"""Delivering a chat completion the way OpenRouter does: as SSE chunks or one JSON body, faults included."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ._fake_faults import Fault, UsageShape
from ._fake_ledger import Generation, Ledger
from ._fake_sse import DONE_EVENT, PROCESSING_COMMENT, ClientGone, FrameSender, data_event
from ._fake_tools import ToolCall, tool_call_delta, tool_call_message
from ._fake_wire import JSONObject, compact_json


def word_pieces(text: str) -> list[str]:
    """Token-sized pieces that join back into the text: a word with its leading space, cut into
    pieces of at most four characters, the size real tokenizers average (so a long word is
    several tokens, as it would be upstream)."""
    pieces: list[str] = []
    for word in re.findall(r"\s*\S+", text):
        pieces.extend(word[start : start + 4] for start in range(0, len(word), 4))
    return pieces


@dataclass(frozen=True)
class ReplyPlan:
    """An admitted chat completion: what it says, how it ends, and how it is delivered."""

    generation: Generation
    pieces: list[str]
    finish_reason: str
    created: int
    fault: Fault | None
    pause: float
    usage_shape: UsageShape
    tool_call: ToolCall | None = None  # the pieces are then this call's arguments


class _Chunks:
    """`chat.completion.chunk` objects for one generation (§4.1)."""

    def __init__(self, plan: ReplyPlan) -> None:
        generation = plan.generation
        self._envelope: JSONObject = {
            "id": generation.id,
            "provider": generation.provider,
            "model": generation.model,
            "object": "chat.completion.chunk",
            "created": plan.created,
        }
        self._tool_call = plan.tool_call
        self._opened = False

    def content(self, text: str, finish_reason: str | None = None) -> bytes:
        if self._tool_call is None:
            return self._event([_choice(text, finish_reason)])
        delta = {} if finish_reason else tool_call_delta(self._tool_call, text, opening=not self._opened)
        self._opened = True
        return self._event([{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}])

    def usage(self, generation: Generation, shape: UsageShape) -> bytes:
        # Both shapes are seen live (§4.1): the documented `choices: []`, and an empty delta.
        choices = [] if shape == "empty_choices" else [_choice("", None)]
        return self._event(choices, usage=generation.usage_object())

    def error(self, error: JSONObject) -> bytes:
        return self._event([{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], error=error)

    def _event(self, choices: list[JSONObject], **extra: JSONObject) -> bytes:
        return data_event({**self._envelope, "choices": choices, **extra})


def _choice(text: str, finish_reason: str | None) -> JSONObject:
    return {
        "index": 0,
        "delta": {"role": "assistant", "content": text},
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "logprobs": None,
    }


class CompletionStream(Response):
    """`"stream": true`: comment, role chunk, one chunk per word, finish chunk, usage chunk, [DONE]."""

    def __init__(self, plan: ReplyPlan, ledger: Ledger) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-generation-id", plan.generation.id.encode()),
        ]
        self._plan = plan
        self._ledger = ledger
        self._emitted = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        generation = self._plan.generation
        try:
            async with FrameSender(receive, send, pause=self._plan.pause) as frames:
                await self._deliver(frames)
        except ClientGone:
            pass
        finally:
            if not generation.settled:
                # The client left: billing stops where the stream was cut (§4.4).
                self._ledger.settle(generation, completion_tokens=self._emitted, finish_reason=None, cancelled=True)

    async def _deliver(self, frames: FrameSender) -> None:
        plan = self._plan
        chunks = _Chunks(plan)
        await frames.start(self.status_code, self.raw_headers)
        await frames.send(PROCESSING_COMMENT)
        await frames.send(chunks.content(""))
        for piece in plan.pieces:
            if await self._fault_cuts_in(frames, chunks, after_last_word=False):
                return
            await frames.send(chunks.content(piece))
            self._emitted += 1
        if await self._fault_cuts_in(frames, chunks, after_last_word=True):
            return
        await frames.send(chunks.content("", plan.finish_reason))
        # The usage chunk comes after the finish_reason chunk (§4.1), so settle in between.
        self._ledger.settle(
            plan.generation,
            completion_tokens=self._emitted,
            finish_reason=plan.finish_reason,
            cost_override=plan.fault.cost_override if plan.fault else None,
        )
        if not (plan.fault and plan.fault.no_usage):
            await frames.send(chunks.usage(plan.generation, plan.usage_shape))
        await frames.send(DONE_EVENT, last=True)

    async def _fault_cuts_in(self, frames: FrameSender, chunks: _Chunks, *, after_last_word: bool) -> bool:
        fault = self._plan.fault
        if fault is None:
            return False

        def due(after: int | None) -> bool:
            # A break counted past the reply's last word happens right after it.
            return after is not None and (after == self._emitted or after_last_word)

        cost_override = fault.cost_override
        if due(fault.mid_stream_error_after):
            self._ledger.settle(
                self._plan.generation,
                completion_tokens=self._emitted,
                finish_reason="error",
                cost_override=cost_override,
            )
            # The error event is the last one: no usage, no [DONE] (§4.3).
            await frames.send(chunks.error(fault.mid_stream_error()), last=True)
            return True
        if due(fault.drop_after):
            # Whatever was generated before the cut is billed; the client must ask /generation.
            self._ledger.settle(
                self._plan.generation,
                completion_tokens=self._emitted,
                finish_reason=None,
                cost_override=cost_override,
            )
            if fault.clean_eof:
                await frames.end()
            # Otherwise return with the body unfinished: the server then cuts the connection.
            return True
        return False


class _CutBody(Response):
    """Half of a JSON body, then a cut connection (or a clean but early end with `clean_eof`)."""

    def __init__(self, body: bytes, headers: dict[str, str], *, clean_eof: bool) -> None:
        self.status_code = 200
        self.background = None
        self._whole_body = body
        self.raw_headers = [(b"content-type", b"application/json")]
        self.raw_headers += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        self._clean_eof = clean_eof

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with FrameSender(receive, send, pause=0) as frames:
            await frames.start(self.status_code, self.raw_headers)
            await frames.send(self._whole_body[: len(self._whole_body) // 2])
            if self._clean_eof:
                await frames.end()


async def complete_in_one_body(plan: ReplyPlan, ledger: Ledger) -> Response:
    """`"stream": false`: the whole completion as one `chat.completion` object."""
    generation, fault = plan.generation, plan.fault
    pieces: list[str] = plan.pieces
    finish_reason: str | None = plan.finish_reason
    if fault is not None and fault.mid_stream_error_after is not None:
        pieces = pieces[: fault.mid_stream_error_after]
        finish_reason = "error"
    elif fault is not None and fault.drop_after is not None:
        pieces = pieces[: fault.drop_after]
        finish_reason = None
    # Non-streaming generations are billed in full even if the client leaves (§4.4), so settle first.
    ledger.settle(
        generation,
        completion_tokens=len(pieces),
        finish_reason=finish_reason,
        cost_override=fault.cost_override if fault else None,
    )
    # Take as long as streaming the same words would.
    await asyncio.sleep(plan.pause * len(pieces))
    choice: JSONObject = {
        "logprobs": None,
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "index": 0,
        "message": {"role": "assistant", "content": "".join(pieces), "refusal": None, "reasoning": None},
    }
    if plan.tool_call is not None:
        choice["message"] = tool_call_message(plan.tool_call, "".join(pieces))
    if finish_reason == "error" and fault is not None:
        # The non-streaming form of a mid-generation error (§4.3).
        choice["error"] = fault.mid_stream_error()
    body: JSONObject = {
        "id": generation.id,
        "provider": generation.provider,
        "model": generation.model,
        "object": "chat.completion",
        "created": plan.created,
        "choices": [choice],
    }
    if not (fault and fault.no_usage):
        body["usage"] = generation.usage_object()
    headers = {"X-Generation-Id": generation.id}
    if fault is not None and fault.drop_after is not None:
        return _CutBody(compact_json(body), headers, clean_eof=fault.clean_eof)
    return JSONResponse(body, headers=headers)
