"""An admitted generation and its delivery, whatever endpoint asked for it: as SSE events or one JSON body.

A reply is a list of output pieces: reasoning, text, audio and images, each billing its own
tokens at its own price. How the pieces look on the wire is the endpoint's ``Wire``
(chat completions, legacy completions, Responses, Anthropic Messages); when they are sent,
how faults break them and when the generation is charged is the same for all of them, here.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
from dataclasses import dataclass
from typing import Protocol

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ._fake_billing import OutputBill
from ._fake_faults import Fault, UsageShape
from ._fake_ledger import Generation, Ledger
from ._fake_sse import ClientGone, FrameSender
from ._fake_tools import ToolCall
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


@functools.lru_cache(maxsize=8)
def media_payload(size: int, magic: bytes = b"\x89PNG\r\n\x1a\n") -> str:
    """Base64 of ``size`` bytes that start like a PNG (contents do not matter to anyone)."""
    return base64.b64encode((magic + bytes(max(0, size - len(magic))))[:size]).decode()


@dataclass(frozen=True)
class ReplyPlan:
    """An admitted generation: what it says, how it ends, and how it is delivered.

    ``finish_reason`` is in chat-completion terms (``stop``, ``length``, ``tool_calls``); each
    wire says it in its own (``incomplete``, ``max_tokens``, ``tool_use``…).
    """

    generation: Generation
    pieces: list[OutputPiece]
    finish_reason: str
    created: int
    fault: Fault | None
    pause: float
    usage_shape: UsageShape
    tool_call: ToolCall | None = None  # the pieces are then this call's arguments


class Wire(Protocol):
    """How one endpoint writes a generation: its events in order, or its whole body."""

    def opening(self) -> list[bytes]:
        """What comes before the first piece (comments, a role chunk, `response.created`…)."""

    def piece(self, piece: OutputPiece) -> list[bytes]:
        """The events that carry one piece of output."""

    def finish(self) -> list[bytes]:
        """What closes the output, sent before the generation is charged."""

    def closing(self, *, usage: bool) -> list[bytes]:
        """What follows once it is charged: the usage (unless ``usage`` is false) and the end."""

    def error(self, error: JSONObject) -> bytes:
        """A mid-generation error, the stream's last event (OpenRouter's error object)."""

    def body(
        self, pieces: list[OutputPiece], finish_reason: str | None, *, usage: bool, error: JSONObject | None
    ) -> JSONObject:
        """The whole non-streaming answer; ``finish_reason`` is ``error`` (with ``error``, OpenRouter's
        error object) or ``None`` when a fault broke it."""


def sse_headers(generation: Generation) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        (b"x-generation-id", generation.id.encode()),
    ]


class GenerationStream(Response):
    """`"stream": true`: the wire's opening, one event group per piece, its finish, the charge, its closing."""

    def __init__(self, plan: ReplyPlan, ledger: Ledger, wire: Wire) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = sse_headers(plan.generation)
        self._plan = plan
        self._ledger = ledger
        self._wire = wire
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
        plan, wire = self._plan, self._wire
        await frames.start(self.status_code, self.raw_headers)
        for frame in wire.opening():
            await frames.send(frame)
        for piece in plan.pieces:
            if await self._fault_cuts_in(frames, after_last_word=False):
                return
            for frame in wire.piece(piece):
                await frames.send(frame)
            piece.add_to(self._output)
            self._emitted += 1
        if await self._fault_cuts_in(frames, after_last_word=True):
            return
        for frame in wire.finish():
            await frames.send(frame)
        # Usage comes after the output has ended (§4.1), so the generation is charged in between.
        self._ledger.settle(
            plan.generation,
            output=self._output,
            finish_reason=plan.finish_reason,
            cost_override=plan.fault.cost_override if plan.fault else None,
        )
        closing = wire.closing(usage=not (plan.fault and plan.fault.no_usage))
        for index, frame in enumerate(closing):
            await frames.send(frame, last=index == len(closing) - 1)

    async def _fault_cuts_in(self, frames: FrameSender, *, after_last_word: bool) -> bool:
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
            # The error event is the last one: no usage, no terminator (§4.3).
            await frames.send(self._wire.error(fault.mid_stream_error()), last=True)
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


async def complete_in_one_body(plan: ReplyPlan, ledger: Ledger, wire: Wire) -> Response:
    """`"stream": false`: the whole answer as one JSON object, faults applied to it."""
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
    # The non-streaming form of a mid-generation error (§4.3) carries the error beside the partial answer.
    error = fault.mid_stream_error() if fault is not None and finish_reason == "error" else None
    body = wire.body(pieces, finish_reason, usage=not (fault and fault.no_usage), error=error)
    headers = {"X-Generation-Id": generation.id}
    if fault is not None and fault.drop_after is not None:
        return _CutBody(compact_json(body), headers, clean_eof=fault.clean_eof)
    return JSONResponse(body, headers=headers)
