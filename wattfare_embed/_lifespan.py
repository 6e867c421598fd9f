"""The ASGI lifespan protocol, for apps that are also served on their own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Receive, Send

__all__ = ["run_lifespan"]


async def run_lifespan(
    receive: Receive, send: Send, startup: Callable[[], Awaitable[None]], shutdown: Callable[[], Awaitable[None]]
) -> None:
    """Answer ``lifespan.startup`` / ``lifespan.shutdown`` with the app's own start and stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
