"""The smallest integration: a Starlette app that mounts the embed.

Run: ``WATTFARE_SECRET_KEY=… WATTFARE_PUBLISHABLE_KEY=… uvicorn example_apps.starlette_app.app:app``
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from wattfare_embed import Wattfare, to_wattfare_error
from wattfare_embed.middleware import WattfareMiddleware


def current_user(request: Request) -> str | None:
    return request.headers.get("x-demo-user") or None  # your app's real auth goes here


def create_app(wf: Wattfare) -> Starlette:
    async def summarise(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return JSONResponse({"error": {"code": "auth", "message": "sign in first"}}, status_code=401)
        text = (await request.json())["text"]
        client = wf.user(user).openai()  # billed to this user, capped at what they approved
        try:
            reply = await client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"Summarise: {text}"}]
            )
        except Exception as exc:
            raise to_wattfare_error(exc) or exc from exc  # WattfareMiddleware answers it as typed JSON
        status = (await wf.user(user).status()).to_json()
        return JSONResponse({"summary": reply.choices[0].message.content, "remainingUsd": status["remainingUsd"]})

    app = Starlette(routes=[Route("/summarise", summarise, methods=["POST"]), Mount("/wattfare", app=wf)])
    app.add_middleware(WattfareMiddleware, wattfare=wf)
    return app


def __getattr__(name: str) -> Starlette:
    # `uvicorn example_apps.starlette_app.app:app` builds the app from the environment on demand.
    if name == "app":
        return create_app(Wattfare(resolve_user=current_user, app_name="Summariser"))
    raise AttributeError(name)
