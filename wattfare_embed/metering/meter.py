"""Reading a response on the side: usage, cost, generation id, output so far, errors.

The bytes themselves are forwarded untouched by the proxy; the meter only looks. For streams
it splits SSE lines incrementally on any of the line ends SSE allows (CRLF, LF or a lone CR,
even split across reads), skips comment lines such as ``: OPENROUTER PROCESSING`` and
``event:`` names (every API repeats the name in the data's ``type``), and hands each data
event to its endpoint's reader (``EventReader``: chat, Responses, Messages), which says what it
carries through the meter's few verbs: output, a usage, a finish, an error, the end. A usage is
final only once the generation has finished: one sent earlier cannot count the output still
to come, so it is not the bill and does not stop the cut-off. Given a ``hold``, the meter also
says where in a chunk the running estimate first passed it, so the proxy can cut the stream at
that event rather than after whatever else the same network read carried.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from .._json import read_reply
from ..money import Micros
from .chat_api import read_chat_event
from .output import charged_cost

__all__ = ["EventReader", "ResponseMeter", "TokenPrices", "UsageTokens"]

# An event that carries output is at least one token. Providers that send one token per event
# (most) are counted exactly by events; for providers that bundle several tokens into an event,
# six characters count as one. Real tokens average about four characters, so this never runs
# ahead of a reply that stays within its max_tokens (a cut-off there would be a false alarm);
# the cost is that a provider overrunning max_tokens with bundled events is cut a little late.
_CHARS_PER_TOKEN = 6
_CR, _LF = 13, 10


class EventReader(Protocol):
    """What one endpoint's events (or whole body, ``whole=True``) tell the meter."""

    def __call__(self, meter: ResponseMeter, event: dict[str, Any], whole: bool, /) -> None: ...


# The (input, output) tokens a usage object counts, or None when it counts none: each API names them its own way.
UsageTokens = Callable[[dict[str, Any]], tuple[int, int] | None]


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """What pricing a usage by its token counts needs, from the admission: micro-dollars per input token
    at the dearest rate one can bill, per output token likewise, and the prompt's fees that are not
    tokens (request, per-image, parser and search fees)."""

    input: Decimal
    output: Decimal
    fees: Micros


def _tokens_within(budget: Micros, per_token: Decimal) -> int:
    """The most tokens for which ``ceil(tokens * per_token) <= budget`` (-1 when not even none fit)."""
    if budget < 0:
        return -1
    if per_token <= 0:
        return 2**62
    return int(Decimal(budget) // per_token)


class ResponseMeter:
    """Follows one response and knows what it has cost so far.

    ``output_price`` is micro-dollars per output token at the dearest output dimension the
    request can use; ``free`` says a reported cost of zero is believable (a free model).
    """

    def __init__(
        self,
        prompt_cost: Micros,
        output_price: Decimal,
        *,
        hold: Micros | None = None,
        free: bool = False,
        read_event: EventReader = read_chat_event,
        usage_tokens: UsageTokens | None = None,
        token_prices: TokenPrices | None = None,
    ) -> None:
        self._prompt_cost = prompt_cost
        self._output_price = output_price
        self._hold = hold
        self._free = free
        self._read_event = read_event
        self._usage_tokens = usage_tokens
        self._token_prices = token_prices
        # The most output the hold pays for, worked out once: `estimated_cost() > hold` exactly when
        # more tokens than this have streamed (the per-event check is then one comparison).
        self._allowed_tokens = None if hold is None else _tokens_within(hold - prompt_cost, output_price)
        self._pending: list[bytes] = []
        self._in_event = False  # a complete line of an event not yet ended by a blank line
        self._after_cr = False  # the last read ended on CR: an LF opening the next one ends nothing
        self._usage_final = False
        self._usage_cost: Micros | None = None
        self.generation_id: str | None = None
        self.response_model: str | None = None  # the model that answered, as the upstream names it
        self.usage: dict[str, Any] | None = None
        self.events = 0  # JSON data events read
        self.output_chars = 0
        self.output_events = 0
        self.media_tokens = 0
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
        start, size = 0, len(chunk)
        if self._after_cr and size:
            self._after_cr = False
            if chunk[0] == _LF:
                start = 1  # the LF of a CRLF split across two reads
        cr = chunk.find(b"\r", start)
        while True:
            if cr < 0:  # LF line ends only, from here on: the common case, one search a line
                end = chunk.find(b"\n", start)
            else:
                if cr < start:
                    cr = chunk.find(b"\r", start)
                lf = chunk.find(b"\n", start, cr if cr >= 0 else size)
                end = lf if lf >= 0 else cr
            if end < 0:
                break
            line = chunk[start:end]
            if self._pending:
                line = b"".join([*self._pending, line])
                self._pending.clear()
            start = end + 1
            if end == cr:
                if start < size:
                    start += chunk[start] == _LF
                else:
                    self._after_cr = True
            if self._line(line) and self.passes_hold():
                return start
        if start < size:
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
            event = read_reply(data)
        except ValueError:
            return True
        if isinstance(event, dict):
            self.events += 1
            self.observe(event)
        return True

    def passes_hold(self) -> bool:
        """True when the output so far costs more than the hold and no final bill is known."""
        return (
            self._allowed_tokens is not None
            and self.output_tokens > self._allowed_tokens
            and not self.done
            and self.trusted_cost() is None
        )

    def separator(self) -> bytes:
        """What ends the event (or line) forwarded last, so that an event of ours can follow it."""
        if self._pending:
            return b"\n\n"  # the stream stopped mid-line
        if self._in_event:
            # After a lone CR a reader may take our LF as the rest of a CRLF: one more ends the event.
            return b"\n\n" if self._after_cr else b"\n"
        return b""

    # -- any JSON body or event: the reader's verbs ------------------------------------------

    def observe(self, event: dict[str, Any], *, whole: bool = False) -> None:
        """Take one parsed event (stream) or the whole body (non-streaming: ``whole=True``)."""
        self._read_event(self, event, whole)

    def add_output(self, chars: int, media: int = 0) -> None:
        """One event's billable output: characters of text (any kind) and tokens of media."""
        self.output_chars += chars
        self.media_tokens += media
        self.output_events += 1

    def take_usage(self, usage: dict[str, Any], *, final: bool, merge: bool = False) -> None:
        """A usage object; ``final`` once the generation has finished; ``merge`` adds its fields to
        the last one (Anthropic states input tokens first and the output at the end)."""
        if merge and self.usage is not None:
            usage = {**self.usage, **usage}
        self.usage = usage
        self._usage_cost = charged_cost(usage)
        self._usage_final = final

    def fail(self, error: dict[str, Any]) -> None:
        """The upstream's own error, in the stream or the body: the generation failed."""
        self.error = error
        self.finish_reason = "error"

    # -- what it cost -----------------------------------------------------------------------

    @property
    def output_tokens(self) -> int:
        text = max(self.output_events, math.ceil(self.output_chars / _CHARS_PER_TOKEN))
        return text + self.media_tokens

    @property
    def reported_cost(self) -> Micros | None:
        """The cost the last usage stated (BYOK included), final or not."""
        return self._usage_cost

    def estimated_cost(self) -> Micros:
        """What the response has cost, without the upstream's figure: its usage's token counts priced
        at the dearest rates that apply when it states them, else the prompt's bound plus the output
        seen so far at the dearest output price."""
        counted = self._usage_tokens(self.usage) if self.usage is not None and self._usage_tokens else None
        if counted is not None and self._token_prices is not None:
            prices = self._token_prices
            tokens, output = counted
            return prices.fees + math.ceil(tokens * prices.input + output * prices.output)
        return self._prompt_cost + math.ceil(Decimal(self.output_tokens) * self._output_price)

    def trusted_cost(self) -> Micros | None:
        """The upstream's own final figure, when it gave one that means something.

        A usage before the generation finished is not final; a reported ``0`` for a
        priced model is treated as unknown (the upstream failed to cost it), never as free.
        """
        if self._usage_cost is None or not self._usage_final:
            return None
        if self._usage_cost == 0 and not self._free:
            return None
        return self._usage_cost
