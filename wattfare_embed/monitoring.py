"""What operators' tools call: ``GET {mount}/health`` (load balancers) and ``GET {mount}/metrics``
(Prometheus)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._http import bearer_token
from .errors import AuthError

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["monitoring_routes"]

logger = logging.getLogger("wattfare_embed")

# A load balancer asks every few seconds; a check that hangs is a failed check.
HEALTH_DEADLINE_SECONDS = 2.0
# A failing check is logged once a minute, not at every load balancer's every check.
_LOG_EVERY_SECONDS = 60.0
_last_logged: dict[str, float] = {}


def monitoring_routes(embed: Wattfare) -> list[Route]:
    async def health(request: Request) -> Response:
        """Ready to meter: the store answers and the price book is loaded. 200 or 503, JSON."""
        store = await _check(embed.store.ping(), "the store did not answer the health check")
        # The first check loads the price book, like the first request would; after that it is
        # held in memory (and refreshed in the background), so this costs nothing.
        prices = await _check(embed.proxy.prices.listing(), "the model list could not be loaded")
        ready = store and prices
        body = {
            "status": "ok" if ready else "unavailable",
            "store": "ok" if store else "unreachable",
            "priceBook": "loaded" if prices else "not loaded",
            "revocations": "instant" if embed.store.hears_revocations else "polling",
        }
        return JSONResponse(body, status_code=200 if ready else 503, headers={"cache-control": "no-store"})

    async def metrics(request: Request) -> Response:
        prometheus = embed.recorder.prometheus
        assert prometheus is not None
        offered = (bearer_token(request) or "").encode()
        accepted = [embed.keys.secret_key, embed.recorder.settings.scrape_token]
        if not offered or not any(hmac.compare_digest(offered, key.encode()) for key in accepted if key):
            raise AuthError("GET /metrics needs Authorization: Bearer <the metrics token or the secret key>")
        body, content_type = prometheus.render()
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})

    routes = [Route("/health", health, methods=["GET"])]
    if embed.recorder.prometheus is not None:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    return routes


async def _check(work: Awaitable[object], failure: str) -> bool:
    try:
        await asyncio.wait_for(work, HEALTH_DEADLINE_SECONDS)
    except Exception:
        # The reason goes to the log, never to the answer: it may name a host or a database.
        now = time.monotonic()
        if now - _last_logged.get(failure, -_LOG_EVERY_SECONDS) >= _LOG_EVERY_SECONDS:
            _last_logged[failure] = now
            logger.warning("health: %s", failure, exc_info=True)
        return False
    return True
