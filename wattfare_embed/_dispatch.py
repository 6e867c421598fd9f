"""The metered endpoints reached straight from the embed's ASGI entry, ahead of Starlette's router.

Every metered request is a ``POST`` to one of a handful of fixed paths, so a dictionary finds
its endpoint; Starlette's router (a regex match per route until one fits) and exception
middleware (a wrapper around every ``send``) are kept for everything else: the model routes
with path parameters, the consent and management pages, and the 404 and 405 answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import WattfareError
from .metering.wire import send_error

__all__ = ["DirectRoutes"]

Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


class DirectRoutes:
    def __init__(self, posts: dict[str, Endpoint], fallback: ASGIApp) -> None:
        self._posts = posts
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._posts.get(_route_path(scope)) if scope.get("method") == "POST" else None
        if endpoint is None:
            await self._fallback(scope, receive, send)
            return
        try:
            await endpoint(scope, receive, send)
        except WattfareError as exc:
            # What the exception middleware would answer; the endpoints answer their own errors,
            # so this is only a net under them.
            await send_error(send, exc)


def _route_path(scope: Scope) -> str:
    """The path below where the embed is mounted, as Starlette's router reads it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path
