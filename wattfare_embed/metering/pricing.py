"""Prices from the upstream's model list, cached and refreshed in the background.

Prices are decimal strings in USD per token (``"0.00000015"``); a price of
``"-1"`` or a missing one means the upstream cannot say in advance (routers
such as ``openrouter/auto``), which the embed treats as *unknown*, never free.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp

from ..errors import InvalidRequestError, UpstreamError

__all__ = ["ModelPrice", "PriceBook", "most_expensive"]

logger = logging.getLogger("wattfare_embed")

# OpenRouter models without a stated output limit still stop somewhere; this is what we reserve for.
DEFAULT_MAX_COMPLETION_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Micro-dollars per token and per request, exact (Decimal), for estimates only."""

    model: str
    prompt: Decimal
    completion: Decimal
    request: Decimal
    max_completion_tokens: int
    known: bool = True

    @property
    def free(self) -> bool:
        return self.known and self.prompt == 0 and self.completion == 0 and self.request == 0


def _micros_per_unit(text: Any) -> Decimal | None:
    if text is None or text == "":
        return Decimal(0)
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None  # "-1" is the upstream's way of saying "variable"
    return value * 1_000_000


def most_expensive(model: str, prices: list[ModelPrice]) -> ModelPrice:
    """Each price at its highest among ``prices``: what a request that may run on any of them costs."""
    return ModelPrice(
        model=model,
        prompt=max(price.prompt for price in prices),
        completion=max(price.completion for price in prices),
        request=max(price.request for price in prices),
        max_completion_tokens=max(price.max_completion_tokens for price in prices),
        known=all(price.known for price in prices),
    )


def price_of(model: Mapping[str, Any]) -> ModelPrice:
    pricing = model.get("pricing") or {}
    prompt = _micros_per_unit(pricing.get("prompt")) if "prompt" in pricing else None
    completion = _micros_per_unit(pricing.get("completion")) if "completion" in pricing else None
    request = _micros_per_unit(pricing.get("request"))
    top = model.get("top_provider") or {}
    limit = top.get("max_completion_tokens") or DEFAULT_MAX_COMPLETION_TOKENS
    known = prompt is not None and completion is not None and request is not None
    # A `discount` is deliberately not applied: estimates stay on the high side.
    return ModelPrice(
        model=str(model.get("id")),
        prompt=prompt or Decimal(0),
        completion=completion or Decimal(0),
        request=request or Decimal(0),
        max_completion_tokens=int(limit),
        known=known,
    )


class PriceBook:
    """The upstream's ``/models`` list, fetched once, refreshed after ``ttl_seconds``.

    A stale list keeps serving while a refresh runs in the background, so no
    request waits on the upstream once the book has loaded.
    """

    def __init__(
        self,
        upstream_url: str,
        http: Callable[[], aiohttp.ClientSession],
        *,
        api_key: str | None,
        ttl_seconds: float,
    ) -> None:
        self._url = f"{upstream_url}/models"
        self._http = http
        self._api_key = api_key
        self._ttl = ttl_seconds
        self._prices: dict[str, ModelPrice] = {}
        self._dearest: ModelPrice | None = None  # each price at its highest, computed per load
        self._raw: bytes | None = None
        self._loaded_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> None:
        headers = {"accept": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        try:
            async with self._http().get(self._url, headers=headers) as response:
                raw = await response.read()
                if response.status != 200:
                    raise UpstreamError(f"the model list answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError("the model list could not be fetched from the upstream") from exc
        try:
            listing = json.loads(raw)
            models = listing.get("data") or []
            prices = {str(model.get("id")): price_of(model) for model in models if isinstance(model, dict)}
        except (ValueError, AttributeError, TypeError) as exc:
            raise UpstreamError("the upstream's model list is not the JSON it should be") from exc
        self._prices = prices
        known = [price for price in prices.values() if price.known]
        self._dearest = most_expensive("*", known) if known else None
        self._raw = raw
        self._loaded_at = time.monotonic()

    async def _ensure(self) -> None:
        if self._raw is None:
            async with self._lock:
                if self._raw is None:
                    await self._load()
        elif time.monotonic() - self._loaded_at > self._ttl and self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            await self._load()
        except Exception:
            logger.warning("refreshing the model list failed; keeping the old prices", exc_info=True)
            self._loaded_at = time.monotonic()
        finally:
            self._refreshing = None

    async def price(self, model: str) -> ModelPrice | None:
        """The price of a model id (variant suffixes such as ``:nitro`` fall back to the base model)."""
        await self._ensure()
        found = self._prices.get(model)
        if found is None and ":" in model:
            found = self._prices.get(model.split(":", 1)[0])
        return found

    async def listing(self) -> bytes:
        """The upstream's model list as it sent it."""
        await self._ensure()
        assert self._raw is not None
        return self._raw

    async def for_request(self, payload: dict[str, Any], *, allow_unpriced: bool) -> ModelPrice:
        """What a request may cost per token: its model's price or, with an OpenRouter fallback
        list (``models``), the dearest of them, since the upstream bills whichever one ran."""
        model: str = payload["model"]
        fallbacks = payload.get("models")
        if fallbacks is not None and not (
            isinstance(fallbacks, list) and all(isinstance(name, str) and name for name in fallbacks)
        ):
            raise InvalidRequestError("`models` must be a list of model ids")
        prices: list[ModelPrice] = []
        for name in dict.fromkeys([model, *(fallbacks or [])]):
            price = await self.price(name)
            if price is None:
                raise InvalidRequestError(f"unknown model {name!r}; GET /api/v1/models lists what is available")
            if not price.known:
                if not allow_unpriced:
                    raise InvalidRequestError(
                        f"model {name!r} has no price to meter in advance, so it cannot run under a cap "
                        "(Wattfare(allow_unpriced_models=True) meters it at the highest listed prices)"
                    )
                price = self.ceiling(name)
            prices.append(price)
        return prices[0] if len(prices) == 1 else most_expensive(model, prices)

    def ceiling(self, model: str) -> ModelPrice:
        """The highest listed prices, for a model that cannot state its own (a router such as
        ``openrouter/auto`` may pick any listed model, so it is metered as the dearest)."""
        if self._dearest is None:
            return ModelPrice(model, Decimal(0), Decimal(0), Decimal(0), 0, known=False)
        return replace(self._dearest, model=model)
