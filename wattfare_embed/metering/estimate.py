"""Admission: what a request may cost before it is sent, and how far ``max_tokens`` may go.

No tokenizer is downloaded: the prompt is counted as one token per three bytes
of its JSON (real tokenizers average about four characters a token, so this
over-counts English and roughly matches dense scripts), plus a per-message
overhead. The estimate only sizes the reservation; the upstream's reported
cost is what is charged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from ..money import Micros
from .pricing import ModelPrice

__all__ = [
    "MIN_COMPLETION_TOKENS",
    "Admission",
    "affordable_tokens",
    "estimate_prompt_tokens",
    "plan_admission",
    "requested_completion_tokens",
]

# Some providers refuse fewer (OpenRouter documents a floor of 16 for some).
MIN_COMPLETION_TOKENS = 16
_IMAGE_TOKENS = 1500  # an image part, whatever its size: on the high side for common models


def estimate_prompt_tokens(payload: dict[str, Any]) -> int:
    """A conservative prompt size for a chat or embeddings request."""
    parts: list[Any] = []
    images = 0
    for key in ("messages", "prompt", "input", "tools", "tool_choice", "response_format", "functions"):
        if key in payload:
            parts.append(payload[key])
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                images += sum(1 for part in content if isinstance(part, dict) and "image" in str(part.get("type")))
    size = len(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode())
    count = len(messages) if isinstance(messages, list) else 1
    return math.ceil(size / 3) + 4 * count + 8 + images * _IMAGE_TOKENS


@dataclass(frozen=True, slots=True)
class Admission:
    """The money to hold for a request and the completion budget it fits."""

    prompt_tokens: int
    prompt_cost: Micros
    wanted: Micros
    minimum: Micros
    requested_max_tokens: int | None
    completion_limit: int
    # `n` completions each up to the limit: the upstream bills every one of them.
    choices: int = 1


def _cost(tokens: int, per_token: Decimal) -> Micros:
    return math.ceil(tokens * per_token)


def requested_completion_tokens(payload: dict[str, Any]) -> int | None:
    """The completion limit the client asked for: the smaller of ``max_tokens`` and ``max_completion_tokens``."""
    limits = [
        value
        for value in (payload.get("max_tokens"), payload.get("max_completion_tokens"))
        if isinstance(value, int) and not isinstance(value, bool) and value > 0
    ]
    return min(limits) if limits else None


def plan_admission(payload: dict[str, Any], price: ModelPrice, *, completion: bool = True) -> Admission:
    prompt_tokens = estimate_prompt_tokens(payload)
    prompt_cost = _cost(prompt_tokens, price.prompt) + math.ceil(price.request)
    requested = requested_completion_tokens(payload) if completion else None
    limit = (requested or price.max_completion_tokens) if completion else 0
    floor = min(MIN_COMPLETION_TOKENS, limit) if completion else 0
    n = payload.get("n") if completion else None
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    return Admission(
        prompt_tokens=prompt_tokens,
        prompt_cost=prompt_cost,
        wanted=prompt_cost + _cost(limit * choices, price.completion),
        minimum=prompt_cost + _cost(floor * choices, price.completion),
        requested_max_tokens=requested,
        completion_limit=limit,
        choices=choices,
    )


def affordable_tokens(admission: Admission, granted: Micros, price: ModelPrice) -> int:
    """The largest completion (per choice) the granted hold pays for (the whole limit when completion is free)."""
    if price.completion <= 0:
        return admission.completion_limit
    spare = Decimal(granted - admission.prompt_cost) / (price.completion * admission.choices)
    tokens = int(spare.to_integral_value(rounding=ROUND_FLOOR))
    return max(0, min(admission.completion_limit, tokens))
