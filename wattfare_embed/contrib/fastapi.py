"""FastAPI: a router whose routes appear in your OpenAPI, dependencies, an error handler.

```python
from fastapi import FastAPI
from wattfare_embed.contrib.fastapi import CurrentWattfareUser, install_wattfare, wattfare_router

app = FastAPI()
app.include_router(wattfare_router(wf), prefix="/wattfare")
install_wattfare(app)   # our errors raised in your routes, however wrapped → typed JSON

@app.post("/chat")
async def chat(ai: CurrentWattfareUser):
    client = ai.openai()
    ...
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._forward import forward_to_embed
from ..app import Wattfare
from ..client import WattfareUser, openai_error_types, typed_error_of
from ..config import call_resolve_user
from ..errors import AuthError, WattfareError
from ..middleware import WattfareErrorMiddleware

__all__ = [
    "CurrentWattfareUser",
    "WattfareDep",
    "current_wattfare_user",
    "get_wattfare",
    "install_wattfare",
    "wattfare_exception_handler",
    "wattfare_router",
]

_SUMMARIES = {
    "/api/v1/chat/completions": "OpenAI-compatible chat completions, metered against the user's cap",
    "/api/v1/responses": "The OpenAI Responses API (stateless), metered against the user's cap",
    "/api/v1/messages": "Anthropic Messages, metered against the user's cap",
    "/api/v1/completions": "Legacy text completions, metered against the user's cap",
    "/api/v1/embeddings": "OpenAI-compatible embeddings, metered against the user's cap",
    "/api/v1/models": "The models available, with prices",
    "/api/v1/models/{model_id:path}": "One model, with its prices",
    "/session": "A session token for the signed-in user",
    "/api/v1/sessions": "A session token for any user (secret key)",
    "/api/v1/connections": "The user's connection and budget (session token)",
    "/api/v1/status": "A user's connection and budget (secret key)",
    "/api/v1/consent": "A one-time consent URL (session token)",
    "/connect": "Redirect to consent for the signed-in user",
}


class _ToEmbed(Response):
    """A response that lets the embed answer the request itself (streaming included)."""

    def __init__(self, embed: Wattfare, route_path: str) -> None:
        super().__init__()
        self._embed = embed
        self._route_path = route_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        full_path: str = scope["path"]
        # A path with a parameter (`/api/v1/models/{model_id:path}`) ends in the parameter's value.
        static, param, _ = self._route_path.partition("{")
        mount_path = full_path[: full_path.rfind(static)] if param else full_path[: len(full_path) - len(static)]
        await forward_to_embed(self._embed, mount_path, scope, receive, send)


def _endpoint(embed: Wattfare, route_path: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def endpoint(request: Request) -> Response:
        return _ToEmbed(embed, route_path)

    return endpoint


def wattfare_router(wattfare: Wattfare, *, tags: list[str] | None = None) -> APIRouter:
    """An ``APIRouter`` with every embed route; include it with the prefix you like.

    Its lifespan (merged into yours by ``include_router``) starts and stops the
    embed and puts it on ``request.state.wattfare``.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with wattfare:
            yield {"wattfare": wattfare}

    router = APIRouter(lifespan=lifespan, tags=list(tags or ["wattfare"]))
    seen: set[tuple[str, str]] = set()
    for route in wattfare.routes:
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        for method in methods:
            if (route.path, method) in seen:
                continue
            seen.add((route.path, method))
            router.add_api_route(
                route.path,
                _endpoint(wattfare, route.path),
                methods=[method],
                name=f"wattfare:{method.lower()}:{route.path}",
                summary=_SUMMARIES.get(route.path),
                include_in_schema=route.path in _SUMMARIES,
                response_class=Response,
            )
    return router


def get_wattfare(request: Request) -> Wattfare:
    """The embed, from the router's lifespan state or ``WattfareMiddleware``."""
    embed = getattr(request.state, "wattfare", None)
    if not isinstance(embed, Wattfare):
        raise RuntimeError("no Wattfare on request.state: include wattfare_router(wf) or add WattfareMiddleware")
    return embed


WattfareDep = Annotated[Wattfare, Depends(get_wattfare)]


async def current_wattfare_user(request: Request, wattfare: WattfareDep) -> WattfareUser:
    """The signed-in user's handle (``resolve_user``); 401 ``auth`` when nobody is signed in."""
    user = await call_resolve_user(wattfare.resolve_user, request)
    if user is None:
        raise AuthError("nobody is signed in to the app")
    return wattfare.user(user)


CurrentWattfareUser = Annotated[WattfareUser, Depends(current_wattfare_user)]


async def wattfare_exception_handler(request: Request, exc: Exception) -> Response:
    error = typed_error_of(exc)
    if error is None:
        raise exc  # an openai error that is not ours (another API): the host's usual 500
    return Response(error.body(), status_code=error.status, headers=error.response_headers())


def install_wattfare(app: FastAPI) -> None:
    """Answer our errors raised in your own routes with the typed JSON and status.

    ``WattfareError``, the openai SDK's error for one, and any exception with one behind it
    (pydantic-ai's ``ModelHTTPError``, instructor's ``InstructorRetryException``, LangChain's or
    LiteLLM's wrappers) are answered the same way, so a route can let a not-connected or
    over-budget call simply raise. Call it before the app starts (it adds a middleware).
    """
    error_types: tuple[type[Exception], ...] = (WattfareError, *openai_error_types())
    for error_type in error_types:
        app.add_exception_handler(error_type, wattfare_exception_handler)
    app.add_middleware(WattfareErrorMiddleware)  # the wrappers, which no handler's type names
