"""Litestar: ``WattfarePlugin`` registers native route handlers, DI, errors and lifespan.

```python
from litestar import Litestar, post
from litestar.di import NamedDependency
from wattfare_embed.contrib.litestar import WattfarePlugin

@post("/chat", status_code=200)
async def chat(wattfare_user: NamedDependency[WattfareUser]) -> dict: ...

app = Litestar([chat], plugins=[WattfarePlugin(wf, path="/wattfare")])
```

The routes are Litestar handlers on exact paths (not a mounted Starlette app),
so Litestar's trailing-slash rewrite of mounts never loses the prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar import Response as LitestarResponse
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_debug_response, create_exception_response
from litestar.handlers import asgi
from litestar.plugins import InitPlugin
from litestar.types import ExceptionHandler

from .._forward import forward_to_embed
from ..app import Wattfare
from ..client import WattfareUser, typed_error_of
from ..config import call_resolve_user
from ..errors import AuthError

__all__ = ["WattfarePlugin"]


def _litestar_default(request: Request[Any, Any, Any], exc: Exception) -> LitestarResponse[Any]:
    """What Litestar answers an exception no handler takes."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 500 and request.app.debug:
        return create_debug_response(request, exc)
    return create_exception_response(request, exc)


def _error_handler(
    for_any: ExceptionHandler[Any] | None, for_500: ExceptionHandler[Any] | None
) -> ExceptionHandler[Any]:
    """The handler for every exception: ours (however wrapped) get the typed JSON, the rest go to the
    host's own handler for ``Exception`` or 500, else Litestar's default, as they would without us."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> LitestarResponse[Any]:
        error = typed_error_of(exc)
        if error is not None:
            return LitestarResponse(content=error.to_json(), status_code=error.status, headers=error.response_headers())
        if for_any is not None:
            return for_any(request, exc)
        if for_500 is not None and not isinstance(exc, HTTPException):
            return for_500(request, exc)
        return _litestar_default(request, exc)

    return handle


class WattfarePlugin(InitPlugin):
    """Add the embed to a Litestar app.

    Registers the embed's routes under ``path``, the dependencies ``wattfare``
    (the ``Wattfare``) and ``wattfare_user`` (the signed-in user's handle), an
    exception handler answering our errors with the typed JSON (raised as they are,
    by the openai SDK, or wrapped by pydantic-ai, instructor, LangChain, LiteLLM…),
    and a lifespan that starts and stops the embed.
    """

    __slots__ = ("path", "wattfare")

    def __init__(self, wattfare: Wattfare, *, path: str = "/wattfare") -> None:
        self.wattfare = wattfare
        self.path = "/" + path.strip("/")

    @asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        async with self.wattfare:
            yield

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        embed, mount_path = self.wattfare, self.path

        async def forward(scope: Any, receive: Any, send: Any) -> None:
            # Behind a proxy (`--root-path /api`) Litestar routes on the path without the host's
            # root_path; the embed, like any Starlette app, wants the full path and a root_path
            # that keeps it, so its redirect and callback URLs keep the proxy's prefix too.
            root: str = scope.get("root_path") or ""
            path: str = scope["path"]
            if root and not path.startswith(root + mount_path):
                scope = {**scope, "path": root + path}
            await forward_to_embed(embed, root + mount_path, scope, receive, send)

        paths = sorted({mount_path + route.path for route in embed.routes})
        app_config.route_handlers.append(asgi(paths, name="wattfare", copy_scope=True)(forward))

        async def provide_wattfare() -> Wattfare:
            return embed

        async def provide_wattfare_user(request: Request[Any, Any, Any]) -> WattfareUser:
            from starlette.requests import Request as StarletteRequest

            user = await call_resolve_user(embed.resolve_user, StarletteRequest(request.scope))  # type: ignore[arg-type]
            if user is None:
                raise AuthError("nobody is signed in to the app")
            return embed.user(user)

        app_config.dependencies.setdefault("wattfare", Provide(provide_wattfare))
        app_config.dependencies.setdefault("wattfare_user", Provide(provide_wattfare_user))
        handlers = app_config.exception_handlers
        handlers[Exception] = _error_handler(handlers.get(Exception), handlers.get(500))
        app_config.signature_namespace.update({"Wattfare": Wattfare, "WattfareUser": WattfareUser})
        app_config.lifespan.append(self._lifespan)
        return app_config
