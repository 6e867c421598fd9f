"""``WattfareMiddleware``: the embed on every request's state, typed JSON for our errors however wrapped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .client import typed_error_of

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["WattfareErrorMiddleware", "WattfareMiddleware"]


class WattfareErrorMiddleware:
    """Answer any exception with our error behind it (raised by the metered client, or wrapped by
    pydantic-ai, instructor, LangChain, LiteLLM…) with the typed JSON and status; re-raise the rest."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            error = typed_error_of(exc)
            if error is None or started:
                raise  # not ours, or too late to answer with JSON: let the server log it
            headers = [(name.lower().encode(), value.encode()) for name, value in error.response_headers().items()]
            await send({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": error.body()})


class WattfareMiddleware(WattfareErrorMiddleware):
    """Pure ASGI middleware for any Starlette-based app (FastAPI included).

    ```python
    app.add_middleware(WattfareMiddleware, wattfare=wf)

    @app.post("/summarise")
    async def summarise(request: Request):
        wf = request.state.wattfare
        agent = Agent(wf.user(current_user(request)).model("openai/gpt-4o-mini"))
        ...  # over the cap: answers 402 with the typed JSON, even wrapped in pydantic-ai's ModelHTTPError
    ```
    """

    def __init__(self, app: ASGIApp, *, wattfare: Wattfare) -> None:
        super().__init__(app)
        self.wattfare = wattfare

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})["wattfare"] = self.wattfare
        await super().__call__(scope, receive, send)
