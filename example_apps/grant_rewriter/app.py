"""An accountless tool: paste text, press Rewrite. The visitor approves three requests (up to
$0.50) in a popup once; the page keeps the grant token and sends it with each rewrite, and the
server spends it with ``wf.grant(token)``. No sign-up, no session, no key in the browser.

Run: ``WATTFARE_SECRET_KEY=… WATTFARE_PUBLISHABLE_KEY=… uvicorn example_apps.grant_rewriter.app:app``
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from wattfare_embed import Wattfare, to_wattfare_error
from wattfare_embed.middleware import WattfareMiddleware

MODEL = "openai/gpt-4o-mini"
REQUESTS = 3
MAX_USD = 0.5

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__APP_NAME__</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  textarea { width: 100%; min-height: 8rem; font: inherit; }
  button { font: inherit; font-weight: 600; padding: .5rem 1rem; margin: .5rem 0; }
  #result { white-space: pre-wrap; background: #f3f5f9; padding: .75rem; border-radius: 8px; min-height: 2rem; }
</style>
</head>
<body>
<h1>__APP_NAME__</h1>
<textarea id="text" aria-label="Text to rewrite">Paste your text here.</textarea>
<button id="rewrite" type="button">Rewrite</button>
<p id="result" aria-live="polite"></p>
<script type="module">
  import { createWattfare } from "/wattfare/wattfare.js";
  // No accounts, so no session: the publishable key is all the browser holds.
  const wattfare = createWattfare({ publishableKey: "__PUBLISHABLE_KEY__" });
  const button = document.getElementById("rewrite");
  const result = document.getElementById("result");
  let grant = wattfare.redirectGrant;  // set when the popup was blocked and the tab went to consent
  let left = grant ? grant.requests : 0;
  const label = () => {
    button.textContent = left > 0
      ? `Rewrite (uses 1 of your ${left} approved request${left === 1 ? "" : "s"})`
      : "Rewrite (asks you to approve __REQUESTS__ requests, up to $__MAX_USD__)";
  };
  label();
  button.addEventListener("click", async () => {
    if (left === 0) {
      const answer = await wattfare.requestGrant({ requests: __REQUESTS__, maxUsd: __MAX_USD__ });
      if (!answer.granted) { result.textContent = "Not approved: nothing was charged."; return; }
      grant = answer;
      left = answer.requests;
    }
    const response = await fetch("/rewrite", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: document.getElementById("text").value, grantToken: grant.grantToken }),
    });
    const body = await response.json();
    if (response.ok) {
      result.textContent = body.rewritten;
      left = body.requestsLeft;
    } else {
      result.textContent = "Error: " + body.error.code + ": " + body.error.message;
      if (body.error.code === "grant_invalid") left = 0;  // used up, expired or revoked: ask again
    }
    label();
  });
</script>
</body>
</html>
"""


def create_app(wf: Wattfare) -> Starlette:
    async def page(request: Request) -> Response:
        text = (
            PAGE.replace("__APP_NAME__", html.escape(wf.settings.app_name))
            .replace("__PUBLISHABLE_KEY__", wf.keys.publishable_key)
            .replace("__REQUESTS__", str(REQUESTS))
            .replace("__MAX_USD__", str(MAX_USD))
        )
        return HTMLResponse(text)

    async def rewrite(request: Request) -> Response:
        body = await request.json()
        grant = wf.grant(str(body.get("grantToken", "")))  # the grant the visitor approved pays
        try:
            reply = await grant.openai().chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"Rewrite this more clearly: {body.get('text', '')}"}],
            )
        except Exception as exc:
            raise to_wattfare_error(exc) or exc from exc  # WattfareMiddleware answers it as typed JSON
        status = await grant.status()
        return JSONResponse({"rewritten": reply.choices[0].message.content, "requestsLeft": status.requests_left})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with wf:  # a mounted app gets no lifespan of its own: start and stop it with the host's
            yield

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/rewrite", rewrite, methods=["POST"]),
            Mount("/wattfare", app=wf),
        ],
    )
    app.add_middleware(WattfareMiddleware, wattfare=wf)
    return app


def __getattr__(name: str) -> Starlette:
    # `uvicorn example_apps.grant_rewriter.app:app` builds the app from the environment on demand.
    if name == "app":
        return create_app(Wattfare(app_name="Rewriter"))
    raise AttributeError(name)
