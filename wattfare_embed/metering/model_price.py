"""One model's prices as the upstream's ``/models`` list states them: every billable key, exact.

Prices are decimal strings in USD per unit (per token, or per request, image or search for
those keys). Here they are Decimals in micro-dollars per unit. A key the model does not list
is not billed that way (0); a key listed as ``null``, ``""``, ``"-1"`` (OpenRouter's "variable",
as for ``openrouter/auto``) or anything unreadable is *unknown*, never free.

Conditional prices (``pricing.overrides[]``) are folded in once, when the list loads: an
override bound to a time of day is taken as always able to apply (its window may be open when
the request runs), and overrides above ``min_prompt_tokens`` become tiers that ``at`` picks by
the request's prompt bound. Every figure is the dearest that could apply; ``discount`` is
deliberately not applied.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["DEFAULT_MAX_COMPLETION_TOKENS", "PRICE_KEYS", "ModelPrice", "most_expensive", "price_of"]

# Every pricing key OpenRouter lists (reference §6), in its order.
PRICE_KEYS = (
    "prompt",
    "completion",
    "request",
    "image",
    "image_token",
    "image_output",
    "audio",
    "audio_output",
    "input_audio_cache",
    "web_search",
    "internal_reasoning",
    "input_cache_read",
    "input_cache_write",
    "input_cache_write_1h",
)
_REQUIRED = frozenset({"prompt", "completion"})
# OpenRouter models without a stated output limit still stop somewhere; this is what we reserve for.
DEFAULT_MAX_COMPLETION_TOKENS = 4096
_ZERO = Decimal(0)
_MICROS_PER_USD = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Micro-dollars per unit for each billable key (Decimal, exact), for estimates only.

    ``unknown`` names the keys whose price the upstream cannot state; ``tiers`` are the prices
    that apply above a prompt size, ascending, each already the dearest of everything below it.
    """

    model: str
    prompt: Decimal
    completion: Decimal
    request: Decimal
    max_completion_tokens: int
    image: Decimal = _ZERO
    image_token: Decimal = _ZERO
    image_output: Decimal = _ZERO
    audio: Decimal = _ZERO
    audio_output: Decimal = _ZERO
    input_audio_cache: Decimal = _ZERO
    web_search: Decimal = _ZERO
    internal_reasoning: Decimal = _ZERO
    input_cache_read: Decimal = _ZERO
    input_cache_write: Decimal = _ZERO
    input_cache_write_1h: Decimal = _ZERO
    unknown: frozenset[str] = frozenset()
    tiers: tuple[tuple[int, ModelPrice], ...] = field(default=(), repr=False)
    # Worked out once per price (per list load), not per request:
    free: bool = field(init=False, repr=False, compare=False)
    pins: dict[str, float] = field(init=False, repr=False, compare=False)  # `provider.max_price` values

    def __post_init__(self) -> None:
        free = not self.unknown and not self.tiers and all(self.rate(key) == 0 for key in PRICE_KEYS)
        object.__setattr__(self, "free", free)
        # OpenRouter's units: prompt and completion in USD per million tokens (micro-dollars per
        # token), request and image in USD each.
        pins = {
            "prompt": _at_least(self.prompt),
            "completion": _at_least(self.completion),
            "request": _at_least(self.request / _MICROS_PER_USD),
            "image": _at_least(self.image / _MICROS_PER_USD),
        }
        object.__setattr__(self, "pins", pins)

    @property
    def known(self) -> bool:
        """The base prices every request pays (prompt, completion, per request) are stated."""
        return not self.unknown & {"prompt", "completion", "request"}

    def rate(self, key: str) -> Decimal:
        value: Decimal = getattr(self, key)
        return value

    def at(self, prompt_tokens: int) -> ModelPrice:
        """The prices for a prompt of up to ``prompt_tokens`` tokens (overrides apply strictly above
        their ``min_prompt_tokens``)."""
        chosen = self
        for minimum, tier in self.tiers:
            if prompt_tokens <= minimum:
                break
            chosen = tier
        return chosen

    def filled(self, keys: Iterable[str], ceiling: ModelPrice) -> ModelPrice:
        """These prices with the unknown ``keys`` taken from ``ceiling`` (the dearest listed)."""
        missing = self.unknown.intersection(keys)
        if not missing:
            return self
        values: dict[str, Any] = {key: max(self.rate(key), ceiling.at(2**62).rate(key)) for key in missing}
        tiers = tuple((minimum, tier.filled(missing, ceiling)) for minimum, tier in self.tiers)
        return replace(self, **values, unknown=self.unknown - missing, tiers=tiers)


def _at_least(value: Decimal) -> float:
    """A JSON number that reads (as the decimal it prints as) no lower than ``value``: a limit sent
    upstream never undercuts the very price it pins."""
    number = float(value)
    while Decimal(repr(number)) < value:
        number = math.nextafter(number, math.inf)
    return number


def _micros_per_unit(text: Any) -> Decimal | None:
    """A price string as micro-dollars per unit; ``None`` when it states no price."""
    if text is None or text == "" or isinstance(text, bool):
        return None
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None  # "-1" is the upstream's way of saying "variable"
    return value * 1_000_000


def _read_rates(pricing: Mapping[str, Any], keys: Iterable[str]) -> tuple[dict[str, Decimal], set[str]]:
    rates: dict[str, Decimal] = {}
    unknown: set[str] = set()
    for key in keys:
        if key not in pricing:
            continue
        value = _micros_per_unit(pricing[key])
        if value is None:
            unknown.add(key)
        else:
            rates[key] = value
    return rates, unknown


def _dearest(price: ModelPrice, rates: Mapping[str, Decimal], unknown: Iterable[str]) -> ModelPrice:
    values: dict[str, Any] = {key: max(price.rate(key), value) for key, value in rates.items()}
    return replace(price, **values, unknown=price.unknown | frozenset(unknown))


def price_of(model: Mapping[str, Any]) -> ModelPrice:
    """A ``/models`` entry's prices, overrides folded in."""
    raw = model.get("pricing")
    pricing: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    rates, unknown = _read_rates(pricing, PRICE_KEYS)
    unknown |= {key for key in _REQUIRED if key not in pricing}
    top = model.get("top_provider")
    limit = top.get("max_completion_tokens") if isinstance(top, Mapping) else None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        limit = DEFAULT_MAX_COMPLETION_TOKENS
    base = _dearest(ModelPrice(str(model.get("id")), _ZERO, _ZERO, _ZERO, limit), rates, unknown)
    tiered: list[tuple[int, dict[str, Decimal], set[str]]] = []
    overrides = pricing.get("overrides")
    for override in overrides if isinstance(overrides, list) else ():
        if not isinstance(override, Mapping):
            continue
        values, unreadable = _read_rates(override, PRICE_KEYS)
        minimum = override.get("min_prompt_tokens")
        if isinstance(minimum, int) and not isinstance(minimum, bool) and minimum >= 0:
            tiered.append((minimum, values, unreadable))
        else:
            # Bound to a time window (or to nothing we can read): it may apply whenever the request runs.
            base = _dearest(base, values, unreadable)
    tiers: list[tuple[int, ModelPrice]] = []
    current = base
    for minimum, values, unreadable in sorted(tiered, key=lambda entry: entry[0]):
        current = _dearest(current, values, unreadable)
        tiers.append((minimum, current))
    return replace(base, tiers=tuple(tiers))


def most_expensive(model: str, prices: list[ModelPrice]) -> ModelPrice:
    """Each price at its highest among ``prices``, tier by tier: what a request that may run on any
    of them can cost."""
    thresholds = sorted({minimum for price in prices for minimum, _ in price.tiers})

    def combined(prompt_tokens: int) -> ModelPrice:
        chosen = [price.at(prompt_tokens) for price in prices]
        values: dict[str, Any] = {key: max(price.rate(key) for price in chosen) for key in PRICE_KEYS}
        limit = max(price.max_completion_tokens for price in prices)
        unknown = frozenset().union(*(price.unknown for price in chosen))
        return replace(ModelPrice(model, _ZERO, _ZERO, _ZERO, limit, unknown=unknown), **values)

    base = combined(0)
    return replace(base, tiers=tuple((minimum, combined(minimum + 1)) for minimum in thresholds))
