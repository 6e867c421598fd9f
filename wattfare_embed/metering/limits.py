"""What the proxy changes in a request before it leaves: the output limits it clamped, the prices it pins.

The upstream is told the most it may generate (every completion limit it honours) and the most
it may charge per unit (``provider.max_price``), so it stops, or refuses, rather than bill past
the hold: a provider dearer than the prices the estimate used is not routed to.
"""

from __future__ import annotations

from typing import Any

from .model_price import ModelPrice

__all__ = ["COMPLETION_LIMIT_FIELDS", "clamp_output", "pin_prices"]

COMPLETION_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


def clamp_output(payload: dict[str, Any], limit: int) -> None:
    """Set every output limit the client sent (``max_tokens`` when it sent none) to ``limit``, and
    keep a reasoning budget within it.

    Reasoning tokens are output tokens, billed within ``max_tokens``; ``reasoning.effort`` is a
    share of ``max_tokens`` (OpenRouter: 95% at max/xhigh down to 10% at minimal), so sending the
    clamped ``max_tokens`` bounds it too, where an absent one would let effort size itself from
    the model's whole output limit.
    """
    sent = [name for name in COMPLETION_LIMIT_FIELDS if payload.get(name) is not None]
    for name in sent or ["max_tokens"]:
        payload[name] = limit
    reasoning = payload.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("max_tokens"), int):
        payload["reasoning"] = {**reasoning, "max_tokens": min(reasoning["max_tokens"], limit)}


def pin_prices(payload: dict[str, Any], price: ModelPrice, *, completes: bool, images: bool) -> None:
    """Send ``provider.max_price`` from the prices the estimate used (``ModelPrice.pins``, in
    OpenRouter's units), keeping any lower one the client sent."""
    keys = ("prompt", "request", "completion", "image") if images else ("prompt", "request", "completion")
    provider = payload.get("provider")
    provider = provider if isinstance(provider, dict) else {}
    theirs = provider.get("max_price")
    theirs = theirs if isinstance(theirs, dict) else {}
    pinned: dict[str, Any] = dict(theirs)
    for key in keys if completes else keys[:2]:
        ours = price.pins[key]
        given = theirs.get(key)
        if isinstance(given, (int, float)) and not isinstance(given, bool) and 0 <= given <= ours:
            continue  # the client's own limit is lower: it wins
        pinned[key] = ours
    payload["provider"] = {**provider, "max_price": pinned}
