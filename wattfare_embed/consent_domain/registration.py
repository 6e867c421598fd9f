"""Registering an app: its name, exact redirect URIs and webhook URL, and a fresh key pair.

The secret key is printed once and never stored: the domain keeps its SHA-256
(client authentication) and the webhook signing key derived from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from ..consent._protocol import is_secure_url, webhook_signing_key
from ..keys import AppKeys, new_key_pair
from .records import App
from .storage import DomainStore
from .token_endpoint import secret_hash

__all__ = ["check_app_url", "register_app"]


def check_app_url(url: str, what: str, *, allow_http: bool = False) -> str:
    """An absolute URL without a fragment, https (or http to a loopback host, or anywhere if allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment or "#" in url:
        raise ValueError(f"{what} must be an absolute http(s) URL without a fragment: {url!r}")
    if not (is_secure_url(url) or allow_http):
        raise ValueError(f"{what} must use https (plain http only to localhost): {url!r}")
    return url


async def register_app(
    store: DomainStore,
    *,
    name: str,
    redirect_uris: Sequence[str],
    webhook_url: str,
    live: bool = True,
    allow_http: bool = False,
) -> AppKeys:
    """Register an app and return its key pair (the only time the secret key exists here).

    ```python
    keys = await register_app(store, name="Acme Chat",
                              redirect_uris=["https://acme.example/wattfare/callback"],
                              webhook_url="https://acme.example/wattfare/webhooks")
    ```
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("the app's name must have 1 to 200 characters")
    if not redirect_uris:
        raise ValueError("register at least one redirect URI")
    uris = tuple(dict.fromkeys(check_app_url(uri, "a redirect URI", allow_http=allow_http) for uri in redirect_uris))
    check_app_url(webhook_url, "the webhook URL", allow_http=allow_http)
    keys = new_key_pair(live=live)
    app = App(
        id=keys.app_id,
        name=name,
        publishable_key=keys.publishable_key,
        secret_hash=secret_hash(keys.secret_key),
        signing_key=webhook_signing_key(keys.secret_key),
        redirect_uris=uris,
        webhook_url=webhook_url,
    )
    await store.add_app(app, int(time.time()))
    return keys
