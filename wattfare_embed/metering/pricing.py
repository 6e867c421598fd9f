"""The upstream's model list, cached and refreshed in the background, and the price of a request.

``model_price`` reads each entry's prices; here a request's models (variants and fallbacks
included) are looked up, and prices the upstream cannot state (a router such as
``openrouter/auto``, or a key listed as unknown) are refused under a cap unless the app allows
them, then taken at the dearest listed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp

from ..errors import InvalidRequestError, UpstreamError
from .billable import BillableRequest
from .model_price import ModelPrice, most_expensive, price_of

__all__ = ["ModelPrice", "PriceBook"]

logger = logging.getLogger("wattfare_embed")


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
        self._models: dict[str, dict[str, Any]] = {}
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
        self._models = {str(model.get("id")): model for model in models if isinstance(model, dict)}
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
        """The price of a model id. A variant not listed on its own (``:nitro``, ``:online``,
        ``:free``, ...) is priced as its base model; what a variant adds (the web search of
        ``:online``) is part of the request, not of the price."""
        await self._ensure()
        name = model
        while (found := self._prices.get(name)) is None and ":" in name:
            name = name.rsplit(":", 1)[0]
        return found

    async def model(self, model_id: str) -> dict[str, Any] | None:
        """One model's entry of the list, as the upstream states it; ``None`` when it lists no such model."""
        await self._ensure()
        return self._models.get(model_id)

    async def listing(self) -> bytes:
        """The upstream's model list as it sent it."""
        await self._ensure()
        assert self._raw is not None
        return self._raw

    async def for_request(self, request: BillableRequest, *, allow_unpriced: bool) -> ModelPrice:
        """What a request may cost per unit: its model's prices or, with an OpenRouter fallback
        list (``models``), the dearest of them, since the upstream bills whichever one ran."""
        prices: list[ModelPrice] = []
        for name in request.models:
            price = await self.price(name)
            if price is None:
                raise InvalidRequestError(f"unknown model {name!r}; GET /api/v1/models lists what is available")
            unknown = sorted(price.unknown & request.dimensions) if price.unknown else []
            if unknown:
                if not allow_unpriced:
                    raise InvalidRequestError(
                        f"model {name!r} states no {'/'.join(unknown)} price to meter in advance, so this "
                        "request cannot run under a cap (Wattfare(allow_unpriced_models=True) meters it at "
                        "the highest listed prices)"
                    )
                price = self.ceiling(name) if not price.known else price.filled(unknown, self.ceiling(name))
            prices.append(price)
        return prices[0] if len(prices) == 1 else most_expensive(request.models[0], prices)

    def ceiling(self, model: str) -> ModelPrice:
        """The highest listed prices, for a model that cannot state its own (a router such as
        ``openrouter/auto`` may pick any listed model, so it is metered as the dearest)."""
        if self._dearest is None:
            raise UpstreamError("the upstream lists no priced model to meter an unpriced one by")
        return replace(self._dearest, model=model)
