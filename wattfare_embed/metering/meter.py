"""Reading a response on the side: usage, cost, generation id, output so far, errors.

The bytes themselves are forwarded untouched by the proxy; the meter only
looks. For streams it splits SSE lines incrementally (CRLF or LF), skips
comment lines such as ``: OPENROUTER PROCESSING``, and reads ``usage`` from
whichever chunk carries it (after the ``finish_reason`` chunk, with empty or
non-empty ``choices``).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from ..money import Micros, micros_from_usd
from .pricing import ModelPrice

__all__ = ["ResponseMeter"]

# A chunk that carries content is at least one token; four characters make about one.
_CHARS_PER_TOKEN = 4


class ResponseMeter:
    """Follows one response and knows what it has cost so far."""

    def __init__(self, price: ModelPrice, prompt_cost: Micros) -> None:
        self._price = price
        self._prompt_cost = prompt_cost
        self._pending = b""
        self.generation_id: str | None = None
        self.reported_cost: Micros | None = None
        self.usage: dict[str, Any] | None = None
        self.output_chars = 0
        self.output_events = 0
        self.finish_reason: str | None = None
        self.error: dict[str, Any] | None = None
        self.done = False

    # -- streams ----------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of an SSE stream (any split, any line ending)."""
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return  # comments (": OPENROUTER PROCESSING"), blank separators, other fields
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            self.observe(event)

    # -- any JSON body or event -------------------------------------------------------------

    def observe(self, event: dict[str, Any]) -> None:
        """Take one parsed chunk (stream) or the whole body (non-streaming)."""
        if self.generation_id is None and isinstance(event.get("id"), str):
            self.generation_id = event["id"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            cost = usage.get("cost")
            if isinstance(cost, (int, float)) and not isinstance(cost, bool):
                self.reported_cost = micros_from_usd(cost)
        error = event.get("error")
        if isinstance(error, dict):
            self.error = error
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            body = choice.get("delta") or choice.get("message") or {}
            if isinstance(body, dict):
                counted = _text_size(body)
                if counted:
                    self.output_chars += counted
                    self.output_events += 1
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finish_reason = reason
                if reason == "error" and isinstance(choice.get("error"), dict):
                    self.error = choice["error"]

    # -- what it cost -----------------------------------------------------------------------

    @property
    def output_tokens(self) -> int:
        return max(self.output_events, math.ceil(self.output_chars / _CHARS_PER_TOKEN))

    def estimated_cost(self) -> Micros:
        """Prompt estimate plus the output seen so far, at list price."""
        return self._prompt_cost + math.ceil(Decimal(self.output_tokens) * self._price.completion)

    def trusted_cost(self) -> Micros | None:
        """The upstream's own figure, when it gave one that means something.

        A reported ``0`` for a priced model is treated as unknown (the upstream
        failed to cost it), never as free.
        """
        if self.reported_cost is None:
            return None
        if self.reported_cost == 0 and not self._price.free:
            return None
        return self.reported_cost


def _text_size(body: dict[str, Any]) -> int:
    size = 0
    for key in ("content", "reasoning", "refusal"):
        value = body.get(key)
        if isinstance(value, str):
            size += len(value)
    for call in body.get("tool_calls") or ():
        if isinstance(call, dict):
            function = call.get("function") or {}
            if isinstance(function, dict):
                size += len(str(function.get("arguments") or "")) + len(str(function.get("name") or ""))
    return size
