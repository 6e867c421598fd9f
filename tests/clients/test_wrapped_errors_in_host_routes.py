"""A host route that lets a client library raise gets our typed answer, whatever wraps our error.

pydantic-ai (``ModelHTTPError``), instructor (``InstructorRetryException``), LangChain and LiteLLM
each raise their own exception for a refused call; WattfareMiddleware, FastAPI's
``install_wattfare`` and the Litestar plugin answer each with our status and JSON, and leave
exceptions that are not ours to the host.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from fastapi import FastAPI
from litestar import Litestar, post
from litestar import Request as LitestarRequest
from litestar.exceptions import NotFoundException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wattfare_embed import Wattfare, WattfareMiddleware, WattfareUser, new_key_pair
from wattfare_embed.contrib.fastapi import install_wattfare
from wattfare_embed.contrib.litestar import WattfarePlugin
from wattfare_embed.testing.live_server import serve_in_loop

from .calls import City
from .conftest import MINI, SONNET, Stack, require_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

Ask = Callable[[WattfareUser], Awaitable[Any]]


async def ask_pydantic_ai(ai: WattfareUser) -> Any:
    from pydantic_ai import Agent

    return (await Agent(ai.model(MINI)).run("Say hello")).output


async def ask_instructor(ai: WattfareUser) -> Any:
    import instructor

    client = instructor.from_openai(ai.openai())
    city = await client.chat.completions.create(
        model=MINI, response_model=City, messages=[{"role": "user", "content": "A city"}]
    )
    return city.model_dump()


async def ask_langchain(ai: WattfareUser) -> Any:
    from langchain_openai import ChatOpenAI

    aclient = ai.openai()
    llm = ChatOpenAI(model=MINI, root_async_client=aclient, async_client=aclient.chat.completions, api_key="unused")
    return (await llm.ainvoke("Say hello")).content


async def ask_litellm(ai: WattfareUser) -> Any:
    import litellm

    reply = await litellm.acompletion(
        model="openai/" + MINI, messages=[{"role": "user", "content": "Say hello"}], client=ai.openai()
    )
    return reply.choices[0].message.content


WRAPPERS: dict[str, tuple[str, str, Ask]] = {
    # name: (package, module, the route's call)
    "pydantic-ai": ("pydantic-ai-slim[openai]", "pydantic_ai", ask_pydantic_ai),
    "instructor": ("instructor", "instructor", ask_instructor),
    "langchain": ("langchain-openai", "langchain_openai", ask_langchain),
    "litellm": ("litellm", "litellm", ask_litellm),
}


def starlette_host(wf: Wattfare, ask: Ask) -> Any:
    async def route(request: Request) -> Response:
        return JSONResponse({"answer": await ask(wf.user(request.headers["x-user"]))})

    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug of the host's own")

    app = Starlette(routes=[Route("/ask", route, methods=["POST"]), Route("/broken", broken, methods=["POST"])])
    app.add_middleware(WattfareMiddleware, wattfare=wf)
    return app


def fastapi_host(wf: Wattfare, ask: Ask) -> Any:
    app = FastAPI()
    install_wattfare(app)

    @app.post("/ask")
    async def route(request: Request) -> dict[str, Any]:
        return {"answer": await ask(wf.user(request.headers["x-user"]))}

    @app.post("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug of the host's own")

    return app


def litestar_host(wf: Wattfare, ask: Ask) -> Any:
    @post("/ask", status_code=200)
    async def route(request: LitestarRequest[Any, Any, Any]) -> dict[str, Any]:
        return {"answer": await ask(wf.user(request.headers["x-user"]))}

    @post("/broken", status_code=200)
    async def broken() -> None:
        raise RuntimeError("a bug of the host's own")

    @post("/missing", status_code=200)
    async def missing() -> None:
        raise NotFoundException("no such thing")

    return Litestar([route, broken, missing], plugins=[WattfarePlugin(wf, path="/wattfare")])


HOSTS = {"starlette": starlette_host, "fastapi": fastapi_host, "litestar": litestar_host}


@pytest_asyncio.fixture(loop_scope="module")
async def host_embed(stack: Stack, tmp_path: Path) -> AsyncIterator[Wattfare]:
    """An embed of its own per test (the Litestar plugin's lifespan stops it), on the shared fake."""
    keys = new_key_pair(app_id="t" + uuid.uuid4().hex[:12])
    wf = Wattfare(
        secret_key=keys.secret_key,
        publishable_key=keys.publishable_key,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'host.db'}",
        upstream_url=stack.wf.settings.upstream_url,
    )
    try:
        yield wf
    finally:
        await wf.shutdown()


async def _post(app: Any, path: str, user: str) -> httpx2.Response:
    async with serve_in_loop(app) as base_url, httpx2.AsyncClient(base_url=base_url, timeout=30) as http:
        return await http.post(path, headers={"x-user": user}, json={})


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
@pytest.mark.parametrize("framework", list(HOSTS))
async def test_a_wrapped_not_connected_error_answers_402_with_our_json(
    framework: str, wrapper: str, host_embed: Wattfare
) -> None:
    package, module, ask = WRAPPERS[wrapper]
    require_client(package, module, wrapper)
    response = await _post(HOSTS[framework](host_embed, ask), "/ask", "nobody-connected")
    assert response.status_code == 402, response.text
    assert response.json()["error"]["code"] == "not_connected" and response.json()["error"]["message"]
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("framework", list(HOSTS))
async def test_a_wrapped_over_cap_error_answers_402_budget_exceeded(
    framework: str, host_embed: Wattfare, stack: Stack
) -> None:
    require_client("pydantic-ai-slim[openai]", "pydantic_ai", "pydantic-ai")
    await host_embed.startup()
    # Connected with a cap too small for one Sonnet request: refused before any upstream call.
    user = await Stack(stack.fake, host_embed, stack.base_url).user("0.0001")

    async def ask_sonnet(ai: WattfareUser) -> Any:
        from pydantic_ai import Agent

        return (await Agent(ai.model(SONNET)).run("Say hello")).output

    response = await _post(HOSTS[framework](host_embed, ask_sonnet), "/ask", user.app_user_id)
    assert response.status_code == 402, response.text
    assert response.json()["error"]["code"] == "budget_exceeded"


@pytest.mark.parametrize("framework", list(HOSTS))
async def test_an_exception_that_is_not_ours_is_left_to_the_host(framework: str, host_embed: Wattfare) -> None:
    response = await _post(HOSTS[framework](host_embed, ask_pydantic_ai), "/broken", "anyone")
    assert response.status_code == 500
    assert "not_connected" not in response.text and "budget_exceeded" not in response.text


async def test_litestar_keeps_answering_its_own_http_exceptions(host_embed: Wattfare) -> None:
    response = await _post(litestar_host(host_embed, ask_pydantic_ai), "/missing", "anyone")
    assert response.status_code == 404
    assert response.json() == {"status_code": 404, "detail": "no such thing"}


async def test_litestar_passes_what_is_not_ours_to_the_hosts_own_exception_handler(host_embed: Wattfare) -> None:
    def host_handler(request: Any, exc: Exception) -> Any:
        from litestar import Response as LitestarResponse

        return LitestarResponse({"host": type(exc).__name__}, status_code=503)

    @post("/broken", status_code=200)
    async def broken() -> None:
        raise RuntimeError("a bug of the host's own")

    @post("/ask", status_code=200)
    async def route(request: LitestarRequest[Any, Any, Any]) -> Any:
        return await ask_pydantic_ai(host_embed.user(request.headers["x-user"]))

    app = Litestar([broken, route], plugins=[WattfarePlugin(host_embed)], exception_handlers={Exception: host_handler})
    response = await _post(app, "/broken", "anyone")
    assert (response.status_code, response.json()) == (503, {"host": "RuntimeError"})
    ours = await _post(app, "/ask", "nobody-connected")
    assert (ours.status_code, ours.json()["error"]["code"]) == (402, "not_connected")
