"""``make demo``: keys, SQLite, development consent and, without an OpenRouter key, the fake upstream.

Run it with ``python -m example_apps.fastapi_chat.run_demo`` (``make demo`` does).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

import uvicorn

from wattfare_embed import ConsentAuthority, DevConsent, Wattfare, new_key_pair
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter

from .app import create_app, current_user

STATE = Path(".demo")


def _log_refused_chats() -> None:
    """Print the developer message of each refused chat (the page shows the user its own copy)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("  %(message)s"))
    logger = logging.getLogger("acme_chat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def step(text: str) -> None:
    print(f"  {text}…", flush=True)


def keys() -> tuple[str, str]:
    """Test keys kept in .demo/keys.env (ignored by git), made on first run."""
    STATE.mkdir(exist_ok=True)
    path = STATE / "keys.env"
    if not path.exists():
        pair = new_key_pair(live=False)
        path.write_text(f"WATTFARE_SECRET_KEY={pair.secret_key}\nWATTFARE_PUBLISHABLE_KEY={pair.publishable_key}\n")
        path.chmod(0o600)
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return values["WATTFARE_SECRET_KEY"], values["WATTFARE_PUBLISHABLE_KEY"]


def make_believe_prices(fake: FakeOpenRouter) -> None:
    """Simulated replies cost about a cent each, so the budget bar visibly falls in the demo."""
    for model in fake.models:
        pricing = model.get("pricing") or {}
        if model.get("id") == "openai/gpt-4o-mini":
            pricing.update({"prompt": "0.00015", "completion": "0.0006"})


def serve_in_thread(app: object, port: int) -> None:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}").start()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Acme Chat demo")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--fake-port", type=int, default=int(os.environ.get("FAKE_PORT", "8001")))
    parser.add_argument("--consent", choices=["dev", "hosted"], default="dev", help="hosted: the consent domain")
    parser.add_argument("--domain-port", type=int, default=int(os.environ.get("DOMAIN_PORT", "8002")))
    args = parser.parse_args()

    _log_refused_chats()
    step("Reading the demo's test keys from .demo/keys.env (made on first run)")
    secret_key, publishable_key = keys()
    hosted = args.consent == "hosted"
    # Hosted: the consent domain mints each user's key with OPENROUTER_MANAGEMENT_KEY; the app holds none.
    openrouter_key = None if hosted else os.environ.get("OPENROUTER_API_KEY")
    simulated = not (os.environ.get("OPENROUTER_MANAGEMENT_KEY") if hosted else openrouter_key)
    upstream_url = "https://openrouter.ai/api/v1"
    if simulated:
        step(f"Starting a local stand-in for OpenRouter on port {args.fake_port} (no key set: replies are simulated)")
        fake = FakeOpenRouter(chunk_delay=0.04)
        make_believe_prices(fake)
        serve_in_thread(fake, args.fake_port)
        upstream_url = f"http://127.0.0.1:{args.fake_port}/api/v1"

    consent: ConsentAuthority = DevConsent(auto_approve=False)  # show the consent screen, as users would see it
    if hosted:
        from .hosted_demo import start_consent_domain

        step(f"Starting the consent domain on port {args.domain_port} and registering Acme Chat there")
        consent, secret_key, publishable_key = start_consent_domain(
            state=STATE,
            port=args.domain_port,
            app_url=f"http://127.0.0.1:{args.port}",
            upstream_url=upstream_url,
            management_key=os.environ.get("OPENROUTER_MANAGEMENT_KEY") or "sk-or-mgmt-test",
            serve=serve_in_thread,
        )
    wf = Wattfare(
        secret_key=secret_key,
        publishable_key=publishable_key,
        database_url=f"sqlite+aiosqlite:///{STATE / 'wattfare.db'}",
        consent=consent,
        resolve_user=current_user,
        app_name="Acme Chat",
        default_monthly_usd=5,
        upstream_url=upstream_url,
        upstream_api_key=openrouter_key,
    )
    url = f"http://127.0.0.1:{args.port}"
    step(f"Opening the SQLite database .demo/wattfare.db and starting Acme Chat on port {args.port}")
    print(
        f"\n  Acme Chat is running on {url}\n\n"
        "  1. Open it and sign in with any name (a stand-in for your app's login).\n"
        "  2. Click “Connect AI budget”, set a monthly cap and Approve.\n"
        "  3. Chat: each reply is charged to that user's budget; watch the bar fall.\n"
        "  4. Disconnect, and the next message asks you to connect again.\n\n"
        + (
            f"  Replies are simulated by a local stand-in for OpenRouter on port {args.fake_port}.\n"
            f"  Set {'OPENROUTER_MANAGEMENT_KEY' if hosted else 'OPENROUTER_API_KEY'} to use real models.\n"
            if simulated
            else "  Using real OpenRouter models, on keys the consent domain mints with OPENROUTER_MANAGEMENT_KEY.\n"
            if hosted
            else "  Using real OpenRouter models, paid by your OPENROUTER_API_KEY.\n"
        )
    )
    funding_key = "OPENROUTER_MANAGEMENT_KEY" if hosted else "OPENROUTER_API_KEY"
    app = create_app(wf, simulated=simulated, funding_key=funding_key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
