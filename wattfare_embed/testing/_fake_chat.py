"""Chat completions on the wire, as OpenRouter writes them: `chat.completion.chunk` events or one body.

Reasoning streams in `delta.reasoning` and `delta.reasoning_details`, audio in `delta.audio`
(with its transcript), images in `delta.images`. The legacy text completions endpoint writes
the same generation as `text_completion` objects whose choices carry `text`.
"""

from __future__ import annotations

import base64

from ._fake_reply import OutputPiece, ReplyPlan
from ._fake_sse import DONE_EVENT, PROCESSING_COMMENT, data_event
from ._fake_tools import tool_call_delta, tool_call_message
from ._fake_wire import JSONObject


def piece_delta(piece: OutputPiece) -> JSONObject:
    delta: JSONObject = {"role": "assistant", "content": piece.text if piece.kind == "text" else ""}
    if piece.kind == "reasoning":
        delta["reasoning"] = piece.text
        delta["reasoning_details"] = [{"type": "reasoning.text", "text": piece.text, "format": "unknown", "index": 0}]
    elif piece.kind == "audio":
        delta["audio"] = {"id": "audio_fake", "data": piece.payload, "transcript": piece.text}
    elif piece.kind == "image":
        delta["images"] = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + piece.payload}}]
    return delta


def _choice(delta: JSONObject, finish_reason: str | None) -> JSONObject:
    return {
        "index": 0,
        "delta": delta,
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "logprobs": None,
    }


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
        message["images"] = [piece_delta(piece)["images"][0] for piece in images]
    return message


class ChatWire:
    """`POST /chat/completions` (§4.1): comment, role chunk, one chunk per piece, finish chunk, usage chunk, [DONE]."""

    def __init__(self, plan: ReplyPlan) -> None:
        generation = plan.generation
        self._plan = plan
        self._envelope: JSONObject = {
            "id": generation.id,
            "provider": generation.provider,
            "model": generation.model,
            "object": "chat.completion.chunk",
            "created": plan.created,
        }
        self._opened = False

    def opening(self) -> list[bytes]:
        return [PROCESSING_COMMENT, self._content("")]

    def piece(self, piece: OutputPiece) -> list[bytes]:
        if self._plan.tool_call is not None and piece.kind == "text":
            return [self._content(piece.text)]  # a tool call's arguments stream as its deltas
        return [self._event([_choice(piece_delta(piece), None)])]

    def finish(self) -> list[bytes]:
        return [self._content("", self._plan.finish_reason)]

    def closing(self, *, usage: bool) -> list[bytes]:
        if not usage:
            return [DONE_EVENT]
        # Both shapes are seen live (§4.1): the documented `choices: []`, and an empty delta.
        shape = self._plan.usage_shape
        choices = [] if shape == "empty_choices" else [_choice({"role": "assistant", "content": ""}, None)]
        return [self._event(choices, usage=self._plan.generation.usage_object()), DONE_EVENT]

    def error(self, error: JSONObject) -> bytes:
        return self._event([{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], error=error)

    def body(
        self, pieces: list[OutputPiece], finish_reason: str | None, *, usage: bool, error: JSONObject | None
    ) -> JSONObject:
        plan, generation = self._plan, self._plan.generation
        choice: JSONObject = {
            "logprobs": None,
            "finish_reason": finish_reason,
            "native_finish_reason": finish_reason,
            "index": 0,
            "message": _message(pieces),
        }
        if plan.tool_call is not None:
            choice["message"] = tool_call_message(plan.tool_call, "".join(piece.text for piece in pieces))
        if error is not None:
            choice["error"] = error
        body: JSONObject = {
            "id": generation.id,
            "provider": generation.provider,
            "model": generation.model,
            "object": "chat.completion",
            "created": plan.created,
            "choices": [choice],
        }
        if usage:
            body["usage"] = generation.usage_object()
        return body

    def _content(self, text: str, finish_reason: str | None = None) -> bytes:
        call = self._plan.tool_call
        if call is None:
            return self._event([_choice({"role": "assistant", "content": text}, finish_reason)])
        delta = {} if finish_reason else tool_call_delta(call, text, opening=not self._opened)
        self._opened = True
        return self._event([{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}])

    def _event(self, choices: list[JSONObject], **extra: JSONObject) -> bytes:
        return data_event({**self._envelope, "choices": choices, **extra})


class TextCompletionWire:
    """`POST /completions`, the legacy text endpoint: `text_completion` objects whose choices carry `text`."""

    def __init__(self, plan: ReplyPlan) -> None:
        generation = plan.generation
        self._plan = plan
        self._envelope: JSONObject = {
            "id": generation.id,
            "provider": generation.provider,
            "model": generation.model,
            "object": "text_completion",
            "created": plan.created,
        }

    def opening(self) -> list[bytes]:
        return [PROCESSING_COMMENT]

    def piece(self, piece: OutputPiece) -> list[bytes]:
        if piece.kind != "text":
            return []  # reasoning is not shown on the legacy endpoint, only billed
        return [self._event(self._choice(piece.text, None))]

    def finish(self) -> list[bytes]:
        return [self._event(self._choice("", self._plan.finish_reason))]

    def closing(self, *, usage: bool) -> list[bytes]:
        if not usage:
            return [DONE_EVENT]
        return [
            data_event({**self._envelope, "choices": [], "usage": self._plan.generation.usage_object()}),
            DONE_EVENT,
        ]

    def error(self, error: JSONObject) -> bytes:
        return data_event({**self._envelope, "choices": [self._choice("", "error")], "error": error})

    def body(
        self, pieces: list[OutputPiece], finish_reason: str | None, *, usage: bool, error: JSONObject | None
    ) -> JSONObject:
        choice = self._choice("".join(piece.text for piece in pieces if piece.kind == "text"), finish_reason)
        if error is not None:
            choice["error"] = error
        body: JSONObject = {**self._envelope, "choices": [choice]}
        if usage:
            body["usage"] = self._plan.generation.usage_object()
        return body

    @staticmethod
    def _choice(text: str, finish_reason: str | None) -> JSONObject:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}

    def _event(self, choice: JSONObject) -> bytes:
        return data_event({**self._envelope, "choices": [choice]})
