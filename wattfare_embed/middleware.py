"""``WattfareMiddleware``: the embed on every request's state, typed JSON for ``WattfareError``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .client import typed_error_of

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["WattfareMiddleware"]


class WattfareMiddleware:
    """Pure ASGI middleware for any Starlette-based app (FastAPI included).

    ```python
    app.add_middleware(WattfareMiddleware, wattfare=wf)

    @app.post("/summarise")
    async def summarise(request: Request):
        wf = request.state.wattfare
        client = wf.user(current_user(request)).openai()
        ...  # a BudgetExceededError (or the openai SDK's error for one) answers 402 with the typed JSON
    ```
    """

    def __init__(self, app: ASGIApp, *, wattfare: Wattfare) -> None:
        self.app = app
        self.wattfare = wattfare

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["wattfare"] = self.wattfare
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # Ours, or ours behind the openai SDK's exception (a metered call in the host's route).
            error = typed_error_of(exc)
            if error is None or started or scope["type"] != "http":
                raise  # not ours, or too late to answer with JSON: let the server log it
            headers = [(name.lower().encode(), value.encode()) for name, value in error.response_headers().items()]
            await send({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": error.body()})
