"""Delivering a chat completion the way OpenRouter does: as SSE chunks or one JSON body, faults included.

A reply is a list of output pieces: reasoning (streamed in `delta.reasoning` and
`delta.reasoning_details`), text, audio (`delta.audio`, with its transcript) and images
(`delta.images`), each billing its own tokens at its own price.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
from dataclasses import dataclass

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ._fake_billing import OutputBill
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
class OutputPiece:
    """One streamed piece of output and the tokens it bills."""

    kind: str  # reasoning | text | audio | image
    text: str = ""  # the reasoning or text piece, or the audio's transcript
    tokens: int = 1
    payload: str = ""  # base64 audio or image

    def add_to(self, bill: OutputBill) -> None:
        if self.kind == "reasoning":
            bill.reasoning_tokens += self.tokens
        elif self.kind == "image":
            bill.image_tokens += self.tokens
        elif self.kind == "audio":
            bill.text_tokens += 1  # the transcript
            bill.audio_tokens += self.tokens - 1
        else:
            bill.text_tokens += self.tokens

    def delta(self) -> JSONObject:
        delta: JSONObject = {"role": "assistant", "content": self.text if self.kind == "text" else ""}
        if self.kind == "reasoning":
            delta["reasoning"] = self.text
            delta["reasoning_details"] = [
                {"type": "reasoning.text", "text": self.text, "format": "unknown", "index": 0}
            ]
        elif self.kind == "audio":
            delta["audio"] = {"id": "audio_fake", "data": self.payload, "transcript": self.text}
        elif self.kind == "image":
            delta["images"] = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + self.payload}}]
        return delta


@functools.lru_cache(maxsize=8)
def media_payload(size: int, magic: bytes = b"\x89PNG\r\n\x1a\n") -> str:
    """Base64 of ``size`` bytes that start like a PNG (contents do not matter to anyone)."""
    return base64.b64encode((magic + bytes(max(0, size - len(magic))))[:size]).decode()


@dataclass(frozen=True)
class ReplyPlan:
    """An admitted chat completion: what it says, how it ends, and how it is delivered."""

    generation: Generation
    pieces: list[OutputPiece]
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
            return self._event([_choice({"role": "assistant", "content": text}, finish_reason)])
        delta = {} if finish_reason else tool_call_delta(self._tool_call, text, opening=not self._opened)
        self._opened = True
        return self._event([{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}])

    def piece(self, piece: OutputPiece) -> bytes:
        if self._tool_call is not None and piece.kind == "text":
            return self.content(piece.text)  # a tool call's arguments stream as its deltas
        return self._event([_choice(piece.delta(), None)])

    def usage(self, generation: Generation, shape: UsageShape) -> bytes:
        # Both shapes are seen live (§4.1): the documented `choices: []`, and an empty delta.
        choices = [] if shape == "empty_choices" else [_choice({"role": "assistant", "content": ""}, None)]
        return self._event(choices, usage=generation.usage_object())

    def error(self, error: JSONObject) -> bytes:
        return self._event([{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], error=error)

    def _event(self, choices: list[JSONObject], **extra: JSONObject) -> bytes:
        return data_event({**self._envelope, "choices": choices, **extra})


def _choice(delta: JSONObject, finish_reason: str | None) -> JSONObject:
    return {
        "index": 0,
        "delta": delta,
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "logprobs": None,
    }


class CompletionStream(Response):
    """`"stream": true`: comment, role chunk, one chunk per piece, finish chunk, usage chunk, [DONE]."""

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
        self._output = OutputBill()

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
                self._ledger.settle(generation, output=self._output, finish_reason=None, cancelled=True)

    async def _deliver(self, frames: FrameSender) -> None:
        plan = self._plan
        chunks = _Chunks(plan)
        await frames.start(self.status_code, self.raw_headers)
        await frames.send(PROCESSING_COMMENT)
        await frames.send(chunks.content(""))
        for piece in plan.pieces:
            if await self._fault_cuts_in(frames, chunks, after_last_word=False):
                return
            await frames.send(chunks.piece(piece))
            piece.add_to(self._output)
            self._emitted += 1
        if await self._fault_cuts_in(frames, chunks, after_last_word=True):
            return
        await frames.send(chunks.content("", plan.finish_reason))
        # The usage chunk comes after the finish_reason chunk (§4.1), so settle in between.
        self._ledger.settle(
            plan.generation,
            output=self._output,
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
                self._plan.generation, output=self._output, finish_reason="error", cost_override=cost_override
            )
            # The error event is the last one: no usage, no [DONE] (§4.3).
            await frames.send(chunks.error(fault.mid_stream_error()), last=True)
            return True
        if due(fault.drop_after):
            # Whatever was generated before the cut is billed; the client must ask /generation.
            self._ledger.settle(
                self._plan.generation, output=self._output, finish_reason=None, cost_override=cost_override
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


def _message(pieces: list[OutputPiece]) -> JSONObject:
    """The non-streaming `message` for these pieces."""
    reasoning = "".join(piece.text for piece in pieces if piece.kind == "reasoning")
    message: JSONObject = {
        "role": "assistant",
        "content": "".join(piece.text for piece in pieces if piece.kind in ("text", "audio")),
        "refusal": None,
        "reasoning": reasoning or None,
    }
    if reasoning:
        message["reasoning_details"] = [{"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}]
    audio = [piece for piece in pieces if piece.kind == "audio"]
    if audio:
        data = base64.b64encode(b"".join(base64.b64decode(piece.payload) for piece in audio)).decode()
        message["audio"] = {"id": "audio_fake", "data": data, "transcript": message["content"]}
    images = [piece for piece in pieces if piece.kind == "image"]
    if images:
        message["images"] = [piece.delta()["images"][0] for piece in images]
    return message


async def complete_in_one_body(plan: ReplyPlan, ledger: Ledger) -> Response:
    """`"stream": false`: the whole completion as one `chat.completion` object."""
    generation, fault = plan.generation, plan.fault
    pieces = plan.pieces
    finish_reason: str | None = plan.finish_reason
    if fault is not None and fault.mid_stream_error_after is not None:
        pieces = pieces[: fault.mid_stream_error_after]
        finish_reason = "error"
    elif fault is not None and fault.drop_after is not None:
        pieces = pieces[: fault.drop_after]
        finish_reason = None
    output = OutputBill()
    for piece in pieces:
        piece.add_to(output)
    # Non-streaming generations are billed in full even if the client leaves (§4.4), so settle first.
    ledger.settle(
        generation, output=output, finish_reason=finish_reason, cost_override=fault.cost_override if fault else None
    )
    # Take as long as streaming the same pieces would.
    await asyncio.sleep(plan.pause * len(pieces))
    choice: JSONObject = {
        "logprobs": None,
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "index": 0,
        "message": _message(pieces),
    }
    if plan.tool_call is not None:
        choice["message"] = tool_call_message(plan.tool_call, "".join(piece.text for piece in pieces))
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
