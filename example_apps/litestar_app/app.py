"""A Litestar app with ``WattfarePlugin``: native routes, DI and typed errors.

Run: ``WATTFARE_SECRET_KEY=… WATTFARE_PUBLISHABLE_KEY=… uvicorn example_apps.litestar_app.app:app``
"""

from __future__ import annotations

from typing import Any

import openai
from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from starlette.requests import Request

from wattfare_embed import Wattfare, WattfareUser, to_wattfare_error
from wattfare_embed.contrib.litestar import WattfarePlugin


def current_user(request: Request) -> str | None:
    return request.headers.get("x-demo-user") or None  # your app's real auth goes here


@get("/budget")
async def budget(wattfare_user: NamedDependency[WattfareUser]) -> dict[str, Any]:
    return (await wattfare_user.status()).to_json()


@post("/ask", status_code=200)
async def ask(data: JSONBody[dict[str, str]], wattfare_user: NamedDependency[WattfareUser]) -> dict[str, Any]:
    client = wattfare_user.openai()  # billed to this user, capped at what they approved
    try:
        reply = await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": data["question"]}]
        )
    except openai.APIError as exc:
        raise to_wattfare_error(exc) or exc from exc  # the plugin answers it as typed JSON
    return {"answer": reply.choices[0].message.content}


def create_app(wf: Wattfare) -> Litestar:
    return Litestar([budget, ask], plugins=[WattfarePlugin(wf, path="/wattfare")])


def __getattr__(name: str) -> Litestar:
    # `uvicorn example_apps.litestar_app.app:app` builds the app from the environment on demand.
    if name == "app":
        return create_app(Wattfare(resolve_user=current_user, app_name="Ask"))
    raise AttributeError(name)
