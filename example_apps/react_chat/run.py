"""``make react-chat``: the React example with test keys, SQLite, the development consent page and,
without an OpenRouter key, the local stand-in for OpenRouter (as ``make demo`` does).

Run it with ``python -m example_apps.react_chat.run`` after ``npm run build`` in ``web/``.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from wattfare_embed import DevConsent, Wattfare
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter

from ..fastapi_chat.run_demo import STATE, keys, make_believe_prices, serve_in_thread
from .app import WEB_DIST, create_app, current_user


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the React chat example")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--fake-port", type=int, default=int(os.environ.get("FAKE_PORT", "8001")))
    args = parser.parse_args()
    if not (WEB_DIST / "index.html").exists():
        raise SystemExit("Build the front end first: make react-chat (or npm ci && npm run build in web/)")

    secret_key, publishable_key = keys()
    openrouter_key = os.environ.get("OPENROUTER_API_KEY")
    upstream_url = "https://openrouter.ai/api/v1"
    if not openrouter_key:
        fake = FakeOpenRouter(chunk_delay=0.04)
        make_believe_prices(fake)
        serve_in_thread(fake, args.fake_port)
        upstream_url = f"http://127.0.0.1:{args.fake_port}/api/v1"
    wf = Wattfare(
        secret_key=secret_key,
        publishable_key=publishable_key,
        database_url=f"sqlite+aiosqlite:///{STATE / 'wattfare.db'}",
        consent=DevConsent(auto_approve=False),
        resolve_user=current_user,
        app_name="Acme Chat",
        default_monthly_usd=5,
        upstream_url=upstream_url,
        upstream_api_key=openrouter_key,
    )
    print(
        f"\n  Acme Chat (React) is running on http://127.0.0.1:{args.port}\n"
        "  Sign in with any name, click “Connect AI budget”, approve a cap, and chat.\n"
        + (
            "  Using real OpenRouter models, paid by your OPENROUTER_API_KEY.\n"
            if openrouter_key
            else f"  Replies are simulated by a local stand-in for OpenRouter on port {args.fake_port}.\n"
        ),
        flush=True,
    )
    uvicorn.run(create_app(wf), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
