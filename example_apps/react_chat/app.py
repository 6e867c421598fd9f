"""The FastAPI back end of the React example: the embed, a stand-in login, and the chat route.

It mirrors the hosted product's three steps: the front end wraps the app in
``<WattfareProvider>`` (``web/src/main.tsx``); the embed mints sessions (``wattfare_router``, step 2);
and the chat route swaps the one line that makes the model client (step 3, marked below).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from wattfare_embed import Wattfare
from wattfare_embed.ai_sdk import UIMessageStreamResponse, to_openai_messages
from wattfare_embed.contrib.fastapi import CurrentWattfareUser, install_wattfare, wattfare_router

WEB_DIST = Path(__file__).with_name("web") / "dist"
DEFAULT_MODEL = os.environ.get("DEMO_MODEL", "openai/gpt-4o-mini")


def current_user(request: Request) -> str | None:
    """The demo's stand-in login: a name in a cookie. Your app uses its real auth here."""
    return request.cookies.get("demo_user") or None


def create_app(wattfare: Wattfare | None = None, *, model: str = DEFAULT_MODEL, web_dist: Path = WEB_DIST) -> FastAPI:
    wf = wattfare or Wattfare(resolve_user=current_user, app_name="Acme Chat")
    app = FastAPI(title="Acme Chat (React)")
    app.include_router(wattfare_router(wf), prefix="/wattfare")  # step 2: sessions, consent, the proxy
    install_wattfare(app)

    @app.post("/api/chat")
    async def chat(request: Request, ai: CurrentWattfareUser) -> UIMessageStreamResponse:
        body: dict[str, Any] = await request.json()
        completion = ai.openai().chat.completions.create(  # step 3: billed to this user, not to you
            model=model, messages=to_openai_messages(body.get("messages")), stream=True
        )
        return UIMessageStreamResponse(completion, user=ai)

    @app.post("/api/login")
    async def login(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        name = str(body.get("name", "")).strip()[:40]
        if not name:
            return JSONResponse({"error": {"code": "invalid_request", "message": "pick a name"}}, status_code=400)
        response = JSONResponse({"user": name})
        response.set_cookie("demo_user", name, httponly=True, samesite="lax")
        return response

    @app.post("/api/logout")
    async def logout() -> Response:
        response = JSONResponse({"user": None})
        response.delete_cookie("demo_user")
        return response

    @app.get("/api/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"user": current_user(request)}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        page = (web_dist / "index.html").read_text("utf-8").replace("{{PUBLISHABLE_KEY}}", wf.keys.publishable_key)
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    if (web_dist / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=web_dist / "assets"), name="assets")
    return app
