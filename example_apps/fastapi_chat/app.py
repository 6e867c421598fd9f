"""A small chat app whose users pay for their own AI: the ``make demo`` app.

The three lines that matter are marked ``# wattfare``: the embed, the router,
and the one swapped model line (``wf.user(uid).openai()``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from wattfare_embed import Wattfare, to_wattfare_error
from wattfare_embed.contrib.fastapi import CurrentWattfareUser, install_wattfare, wattfare_router

PAGE = Path(__file__).with_name("index.html")
# Developer messages ("this user disconnected their AI budget; ask them to connect again") go here;
# the page shows the person copy written for them.
logger = logging.getLogger("acme_chat")
DEFAULT_MODEL = os.environ.get("DEMO_MODEL", "openai/gpt-4o-mini")


def current_user(request: Request) -> str | None:
    """The demo's stand-in login: a name in a cookie. Your app uses its real auth here."""
    return request.cookies.get("demo_user") or None


def create_app(
    wattfare: Wattfare | None = None, *, simulated: bool = False, funding_key: str = "OPENROUTER_API_KEY"
) -> FastAPI:
    """``funding_key``: the setting that makes replies real, named on the page while they are simulated."""
    wf = wattfare or Wattfare(resolve_user=current_user, app_name="Acme Chat")  # wattfare
    app = FastAPI(title="Acme Chat")
    app.include_router(wattfare_router(wf), prefix="/wattfare")  # wattfare
    install_wattfare(app)

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        page = PAGE.read_text("utf-8")
        page = page.replace("{{PUBLISHABLE_KEY}}", wf.keys.publishable_key)
        page = page.replace("{{SIMULATED}}", "true" if simulated else "false")
        page = page.replace("{{MODEL}}", DEFAULT_MODEL)
        page = page.replace("{{FUNDING_KEY}}", funding_key)
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    @app.post("/login")
    async def login(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        name = str(body.get("name", "")).strip()[:40]
        if not name:
            return JSONResponse({"error": {"code": "invalid_request", "message": "pick a name"}}, status_code=400)
        response = JSONResponse({"user": name})
        response.set_cookie("demo_user", name, httponly=True, samesite="lax")
        return response

    @app.post("/logout")
    async def logout() -> Response:
        response = JSONResponse({"user": None})
        response.delete_cookie("demo_user")
        return response

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"user": current_user(request)}

    @app.post("/chat")
    async def chat(request: Request, ai: CurrentWattfareUser) -> Response:
        body: dict[str, Any] = await request.json()
        messages = body.get("messages") or [{"role": "user", "content": str(body.get("message", ""))}]
        client = ai.openai()  # wattfare: the one swapped line; every call is billed to this user
        model = body.get("model") or DEFAULT_MODEL
        try:
            stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
        except openai.APIError as exc:
            # not_connected → the page shows Connect; budget_exceeded → usage and a raise-cap link.
            error = to_wattfare_error(exc)
            if error is not None:
                logger.info("chat for %s refused: %s (%s)", ai.app_user_id, error.message, error.code)
            raise error or exc from exc

        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield _event({"delta": chunk.choices[0].delta.content})
            except Exception as exc:  # a cut-off mid-stream: over the cap, or revoked
                error = to_wattfare_error(exc)
                if error is None:
                    raise
                logger.info("reply for %s ended: %s (%s)", ai.app_user_id, error.message, error.code)
                yield _event(error.to_json())
            yield _event({"done": True})

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    return app


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
