"""Reading a response on the side: usage, cost, generation id, output so far, errors.

The bytes themselves are forwarded untouched by the proxy; the meter only
looks. For streams it splits SSE lines incrementally (CRLF or LF), skips
comment lines such as ``: OPENROUTER PROCESSING``, and reads ``usage`` from
whichever chunk carries it (after the ``finish_reason`` chunk, with empty or
non-empty ``choices``). Given a ``hold``, it also says where in a chunk the
running estimate first passed it, so the proxy can cut the stream at that
event rather than after whatever else the same network read carried.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from ..money import Micros, micros_from_usd
from .pricing import ModelPrice

__all__ = ["ResponseMeter"]

# An event that carries content is at least one token. Providers that send one token per event
# (most) are counted exactly by events; for providers that bundle several tokens into an event,
# six characters count as one. Real tokens average about four characters, so this never runs
# ahead of a reply that stays within its max_tokens (a cut-off there would be a false alarm);
# the cost is that a provider overrunning max_tokens with bundled events is cut a little late.
_CHARS_PER_TOKEN = 6


class ResponseMeter:
    """Follows one response and knows what it has cost so far."""

    def __init__(self, price: ModelPrice, prompt_cost: Micros, hold: Micros | None = None) -> None:
        self._price = price
        self._prompt_cost = prompt_cost
        self._hold = hold
        self._pending: list[bytes] = []
        self._in_event = False  # a complete line of an event not yet ended by a blank line
        self.generation_id: str | None = None
        self.reported_cost: Micros | None = None
        self.usage: dict[str, Any] | None = None
        self.output_chars = 0
        self.output_events = 0
        self.finish_reason: str | None = None
        self.error: dict[str, Any] | None = None
        self.done = False

    # -- streams ----------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> int | None:
        """Take the next bytes of an SSE stream (any split, any line ending).

        Returns ``None``, or the offset just past the event line where the running
        estimate first passed the hold: the caller forwards ``chunk[:offset]`` and
        cuts the stream there (the rest of the chunk is not read).

        Work is proportional to the chunk: a line split over many chunks is
        joined once, when its end arrives, never re-scanned chunk after chunk.
        """
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            line = chunk[start:end]
            if self._pending:
                line = b"".join([*self._pending, line])
                self._pending.clear()
            start = end + 1
            if self._line(line.rstrip(b"\r")) and self.passes_hold():
                return start
        if start < len(chunk):
            self._pending.append(chunk[start:])
        return None

    def _line(self, line: bytes) -> bool:
        """Read one line; True when it was a data event."""
        self._in_event = bool(line)
        if not line.startswith(b"data:"):
            return False  # comments (": OPENROUTER PROCESSING"), blank separators, other fields
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return True
        try:
            event = json.loads(data)
        except ValueError:
            return True
        if isinstance(event, dict):
            self.observe(event)
        return True

    def passes_hold(self) -> bool:
        """True when the output so far costs more than the hold and nothing better is known."""
        return (
            self._hold is not None
            and not self.done
            and self.trusted_cost() is None
            and self.estimated_cost() > self._hold
        )

    def separator(self) -> bytes:
        """What ends the event (or line) forwarded last, so that an event of ours can follow it."""
        if self._pending:
            return b"\n\n"  # the stream stopped mid-line
        return b"\n" if self._in_event else b""

    # -- any JSON body or event -------------------------------------------------------------

    def observe(self, event: dict[str, Any]) -> None:
        """Take one parsed chunk (stream) or the whole body (non-streaming)."""
        if self.generation_id is None and isinstance(event.get("id"), str):
            self.generation_id = event["id"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            cost = usage.get("cost")
            if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) and cost >= 0:
                self.reported_cost = micros_from_usd(cost)
        error = event.get("error")
        if isinstance(error, dict):
            self.error = error
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else ():
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
    calls = body.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict):
            function = call.get("function") or {}
            if isinstance(function, dict):
                size += len(str(function.get("arguments") or "")) + len(str(function.get("name") or ""))
    return size
