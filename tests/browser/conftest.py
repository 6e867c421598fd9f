"""Real-browser fixtures: Debian's Chromium driven by Playwright (sync API), a small host app
("Acme Chat") with the embed mounted at /wattfare, the fake OpenRouter behind it, and a
second server on another origin that forges consent messages.

Servers run in threads (uvicorn), so the tests are plain ``def`` functions. Never run
``playwright install``: the browser is the ``chromium`` Debian package at /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from tests.screenshots import SCREENSHOTS
from wattfare_embed import AppKeys, Wattfare, new_key_pair
from wattfare_embed.consent import DevConsent
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
MOUNT = "/wattfare"
APP_NAME = "Acme Chat"
LOGIN_COOKIE = "app_user"
# A deliberately expensive model, so that one short reply visibly moves a $10 budget.
MODEL = "acme/pricey-demo"
REPLY = "Here is a short streamed reply from the fake model."
IMAGES = SCREENSHOTS


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install -y chromium): the browser tests need Debian's Chromium"
    if IN_CI:
        pytest.fail(reason + ", and CI must run them")
    pytest.skip(reason)


# -- the host app ---------------------------------------------------------------------------------

_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$app_name</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { display: flex; align-items: center; justify-content: space-between; gap: 1rem;
           padding: .9rem 1.5rem; background: #fff; border-bottom: 1px solid #e3e7ef; }
  header h1 { font-size: 1.15rem; margin: 0; }
  main { max-width: 40rem; margin: 1.5rem auto; padding: 0 1.5rem; }
  .bubble { background: #fff; border-radius: 12px; padding: .75rem 1rem; margin: .5rem 0;
            box-shadow: 0 1px 4px rgba(0,0,0,.06); }
  .bubble.me { background: #dfe7ff; margin-left: 4rem; }
  form { display: flex; gap: .5rem; margin-top: 1rem; }
  input { flex: 1; font: inherit; padding: .5rem .7rem; border: 1px solid #c5cbd8; border-radius: 8px; }
  #send { font: inherit; font-weight: 600; padding: .5rem 1rem; border-radius: 8px; border: 1px solid #1d2330;
          background: #1d2330; color: #fff; }
</style>
<script type="module" src="$mount/wattfare.js"></script>
</head>
<body>
<header>
  <h1>$app_name</h1>
  <wattfare-connect publishable-key="$publishable_key" session="$mount/session"></wattfare-connect>
</header>
<main>
  <div class="bubble me">Can you explain what this budget bar is?</div>
  <div class="bubble" id="reply" aria-live="polite">Connect your AI budget, then press Send.</div>
  <form id="chat"><input aria-label="Message" value="Say hello"><button id="send" type="submit">Send</button></form>
</main>
<script type="module">
  window.__messages = [];
  window.__changes = [];
  addEventListener("message", (e) => window.__messages.push({ origin: e.origin, type: e.data && e.data.type }));
  const element = document.querySelector("wattfare-connect");
  element.addEventListener("wattfare-change", (e) => window.__changes.push(e.detail));
  document.getElementById("chat").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/chat", { method: "POST", credentials: "same-origin" });
    const body = await response.json();
    document.getElementById("reply").textContent = response.ok ? body.reply : "Error: " + body.error.code;
    await element.refresh();
  });
  const wanted = new URLSearchParams(location.search).get("autoconnect");
  if (wanted) {
    // No user gesture here: a blocking browser refuses the popup and connect() falls back to a redirect.
    history.replaceState(null, "", "/");
    await customElements.whenDefined("wattfare-connect");
    element.wattfare.connect({ monthlyUsd: Number(wanted) });
  }
</script>
</body>
</html>
""")

_FORGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>forging</title><link rel="icon" href="data:,"></head>
<body><p>Another site, pretending to be the consent popup.</p>
<script>
  const status = { connected: true, status: "active", appUserId: "mallory", monthlyUsd: 999, spentUsd: 0,
                   remainingUsd: 999, periodStart: "2020-01-01T00:00:00Z", periodEnd: "2099-01-01T00:00:00Z",
                   authority: "dev" };
  (window.opener || window.parent).postMessage({ type: "wattfare:connect", status, error: null }, "*");
  document.title = "sent";
</script></body></html>
"""


def _pricey_model(fake: FakeOpenRouter) -> dict[str, Any]:
    model: dict[str, Any] = copy.deepcopy(next(m for m in fake.models if m["id"] == "openai/gpt-4o-mini"))
    model.update(id=MODEL, canonical_slug=MODEL, name="Acme: Pricey Demo")
    model["pricing"] = {"prompt": "0.001", "completion": "0.1", "request": "0", "image": "0"}
    model["top_provider"]["max_completion_tokens"] = 40
    return model


def build_host_app(keys: AppKeys, database_url: str, upstream_url: str) -> tuple[Starlette, Wattfare]:
    embed = Wattfare(
        secret_key=keys.secret_key,
        publishable_key=keys.publishable_key,
        database_url=database_url,
        consent=DevConsent(auto_approve=False),
        resolve_user=lambda request: request.cookies.get(LOGIN_COOKIE),
        app_name=APP_NAME,
        upstream_url=upstream_url,
        # The demo model costs $0.10 a token: a 20-token reply holds $2, above the default ceiling.
        max_request_hold_usd=None,
    )

    async def home(request: Request) -> HTMLResponse:
        page = _PAGE.substitute(app_name=APP_NAME, mount=MOUNT, publishable_key=keys.publishable_key)
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def raw_session(request: Request) -> Response:
        """A session route answering the bare token as text (the client accepts both shapes)."""
        user = request.cookies.get(LOGIN_COOKIE)
        if not user:
            return JSONResponse({"error": {"code": "auth", "message": "sign in first"}}, status_code=401)
        return PlainTextResponse((await embed.create_session(user)).token)

    async def chat(request: Request) -> JSONResponse:
        """The app's own chat route: a metered, streamed completion for the signed-in user."""
        user = request.cookies.get(LOGIN_COOKIE)
        if not user:
            return JSONResponse({"error": {"code": "auth", "message": "sign in first"}}, status_code=401)
        payload = {
            "model": MODEL,
            "stream": True,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "Say hello"}],
        }
        headers = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user}
        url = f"{request.base_url}{MOUNT.lstrip('/')}/api/v1/chat/completions"
        pieces: list[str] = []
        async with (
            httpx2.AsyncClient(timeout=10) as client,
            client.stream("POST", url, json=payload, headers=headers) as response,
        ):
            if response.status_code != 200:
                return JSONResponse(json.loads(await response.aread()), status_code=response.status_code)
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    for choice in json.loads(line[6:]).get("choices") or []:
                        pieces.append((choice.get("delta") or {}).get("content") or "")
        return JSONResponse({"reply": "".join(pieces)})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with embed:  # mounted apps get no lifespan of their own
            yield

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/raw-session", raw_session, methods=["POST"]),
            Route("/chat", chat, methods=["POST"]),
            Mount(MOUNT, app=embed),
        ],
        lifespan=lifespan,
    )
    return app, embed


@dataclass
class Demo:
    base_url: str
    keys: AppKeys
    fake: FakeOpenRouter

    @property
    def origin(self) -> str:
        return self.base_url

    def server_status(self, user: str) -> dict[str, Any]:
        """The user's status as the app's server sees it (secret key)."""
        response = httpx2.get(
            f"{self.base_url}{MOUNT}/api/v1/status",
            params={"appUserId": user},
            headers={"authorization": f"Bearer {self.keys.secret_key}"},
        )
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    _require_chromium()
    fake = FakeOpenRouter(reply_text=REPLY)
    fake.models.append(_pricey_model(fake))
    database = tmp_path_factory.mktemp("browser") / "wattfare.db"
    keys = new_key_pair()
    with serve(fake) as upstream:
        app, _ = build_host_app(keys, f"sqlite+aiosqlite:///{database}", upstream + "/api/v1")
        with serve(app) as base_url:
            yield Demo(base_url, keys, fake)


@pytest.fixture(scope="package")
def foreign_origin() -> Iterator[str]:
    """Another origin (a second server): its page posts a forged "connected" message to its opener or parent."""

    async def forge(request: Request) -> HTMLResponse:
        return HTMLResponse(_FORGER)

    with serve(Starlette(routes=[Route("/forge", forge)])) as base_url:
        yield base_url


# -- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    _require_chromium()
    with sync_playwright() as driver:
        yield driver


def launch(playwright: Playwright, **options: Any) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, **options)


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def blocking_browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium with its popup blocker on (Playwright turns it off by default)."""
    chromium = launch(playwright, ignore_default_args=["--disable-popup-blocking"])
    yield chromium
    chromium.close()


@dataclass
class Console:
    """Errors any page of a context reported: console.error() calls and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("console", self._console)
        context.on("weberror", lambda error: self.errors.append(f"uncaught: {error.error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text} ({message.location.get('url')})")


@dataclass
class Visit:
    """One signed-in user in a fresh browser context."""

    user: str
    context: BrowserContext
    page: Page
    console: Console


def open_visit(browser: Browser, demo: Demo, user: str | None = None) -> Visit:
    user = user or "user_" + uuid.uuid4().hex[:10]
    context = browser.new_context(viewport={"width": 960, "height": 600})
    context.set_default_timeout(10_000)
    context.add_cookies([{"name": LOGIN_COOKIE, "value": user, "url": demo.base_url}])
    console = Console()
    console.watch(context)
    return Visit(user, context, context.new_page(), console)


@pytest.fixture
def visit(browser: Browser, demo: Demo) -> Iterator[Visit]:
    opened = open_visit(browser, demo)
    yield opened
    opened.context.close()


@pytest.fixture(scope="package")
def images() -> Path:
    IMAGES.mkdir(parents=True, exist_ok=True)
    return IMAGES
