"""`/_fake/*`: drive and inspect a fake running in another process (faults, spend, received requests)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._fake_faults import Fault
from ._fake_wire import OpenRouterError

if TYPE_CHECKING:
    from .fake_openrouter import FakeOpenRouter


def control_routes(fake: FakeOpenRouter) -> list[Route]:
    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": [fault.to_json() for fault in fake.faults.pending()]})

    async def add_faults(request: Request) -> Response:
        """Body: one fault object, or a list of them; fields as in `Fault`."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise OpenRouterError(400, "Invalid JSON body") from None
        items = body if isinstance(body, list) else [body]
        if not all(isinstance(item, dict) for item in items):
            raise OpenRouterError(400, "Send a fault object or a list of fault objects")
        # Validate all before queueing any, so a bad list changes nothing.
        faults = [Fault.from_json(item) for item in items]
        for fault in faults:
            fake.faults.add(fault)
        return JSONResponse({"faults": [fault.to_json() for fault in faults]}, status_code=201)

    async def clear_faults(request: Request) -> Response:
        fake.faults.clear()
        return JSONResponse({"faults": []})

    async def spend(request: Request) -> Response:
        # Decimal strings, so another process can total them without float error.
        by_key = {secret: str(amount) for secret, amount in fake.spend_by_key().items()}
        return JSONResponse({"total": str(fake.total_spend()), "by_key": by_key})

    async def received_requests(request: Request) -> Response:
        return JSONResponse({"requests": [received.to_json() for received in fake.requests]})

    return [
        Route("/_fake/faults", list_faults, methods=["GET"]),
        Route("/_fake/faults", add_faults, methods=["POST"]),
        Route("/_fake/faults", clear_faults, methods=["DELETE"]),
        Route("/_fake/spend", spend, methods=["GET"]),
        Route("/_fake/requests", received_requests, methods=["GET"]),
    ]
