"""``make demo-hosted``: the reference consent domain on a second origin, with Acme Chat registered there.

The domain keeps its SQLite database in ``.demo/consent-domain.db``; the key pair it
issued to Acme Chat is kept in ``.demo/hosted-keys.env`` and reused while the domain
still knows the app (and its redirect URI is unchanged).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from wattfare_embed import HostedConsent
from wattfare_embed.consent_domain import ConsentDomain, DomainSettings
from wattfare_embed.consent_domain.login import add_user
from wattfare_embed.consent_domain.registration import register_app
from wattfare_embed.consent_domain.storage import DomainStore

__all__ = ["DEMO_EMAIL", "DEMO_PASSWORD", "start_consent_domain"]

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"


async def _prepare(store: DomainStore, keys_file: Path, app_url: str) -> tuple[str, str]:
    await store.open()
    try:
        callback, webhook = f"{app_url}/wattfare/callback", f"{app_url}/wattfare/webhooks"
        saved = (
            dict(line.split("=", 1) for line in keys_file.read_text().splitlines() if "=" in line)
            if keys_file.exists()
            else {}
        )
        app = await store.get_app(saved.get("APP_ID", "")) if saved else None
        if app is None or app.redirect_uris != (callback,) or app.webhook_url != webhook:
            keys = await register_app(store, name="Acme Chat", redirect_uris=[callback], webhook_url=webhook)
            saved = {"APP_ID": keys.app_id, "SECRET_KEY": keys.secret_key, "PUBLISHABLE_KEY": keys.publishable_key}
            keys_file.write_text("".join(f"{name}={value}\n" for name, value in saved.items()))
            keys_file.chmod(0o600)
        if await store.find_user(DEMO_EMAIL) is None:
            await add_user(store, DEMO_EMAIL, DEMO_PASSWORD)
        return saved["SECRET_KEY"], saved["PUBLISHABLE_KEY"]
    finally:
        await store.close()


def start_consent_domain(
    *,
    state: Path,
    port: int,
    app_url: str,
    upstream_url: str,
    management_key: str,
    serve: Callable[[object, int], None],
) -> tuple[HostedConsent, str, str]:
    """Serve the domain on ``http://127.0.0.1:<port>``; returns the authority and the app's key pair."""
    domain_url = f"http://127.0.0.1:{port}"
    settings = DomainSettings(
        database_url=f"sqlite+aiosqlite:///{state / 'consent-domain.db'}",
        public_url=domain_url,
        upstream_url=upstream_url,
        management_key=management_key,
        name="Wattfare (self-hosted demo)",
    )
    secret_key, publishable_key = asyncio.run(
        _prepare(DomainStore(settings.database_url), state / "hosted-keys.env", app_url)
    )
    serve(ConsentDomain(settings), port)
    deadline = time.monotonic() + 15
    while True:  # the embed reads the discovery document when it starts
        try:
            with urllib.request.urlopen(domain_url + "/.well-known/wattfare-configuration", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    print(
        f"\n  The consent domain runs on {domain_url} (its dashboard: {domain_url}/dashboard).\n"
        f"  Sign in there as {DEMO_EMAIL} with the password {DEMO_PASSWORD}.\n"
    )
    return HostedConsent(domain_url), secret_key, publishable_key
