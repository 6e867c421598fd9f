"""``POST /token`` (a code for a funding grant) and ``POST /revoke`` (RFC 7009), for apps' servers.

Clients authenticate with HTTP Basic: the publishable key and the secret key,
checked against the stored SHA-256 of the secret in constant time. Errors are
RFC 6749 §5.2 JSON. A code used twice revokes the grant minted from it (RFC 6749
§4.1.2): someone else had the code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..consent._protocol import wire_usd
from ..pkce import challenge_matches
from .authorize import code_hash
from .config import DomainSettings
from .forms import FormError, read_form
from .grants import GrantLifecycle, GrantRevokedMeanwhile
from .records import App, GrantState
from .storage import DomainStore
from .upstream import UpstreamFailure

__all__ = ["TokenEndpoint", "secret_hash"]

logger = logging.getLogger("wattfare_embed.consent_domain")

_VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_NO_SUCH_SECRET = hashlib.sha256(b"wattfare: no such client").hexdigest()


def secret_hash(secret_key: str) -> str:
    # The secret has 192 random bits: a plain SHA-256 cannot be brute-forced, and is what we compare.
    return hashlib.sha256(secret_key.encode()).hexdigest()


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    headers = {"cache-control": "no-store", "pragma": "no-cache"}
    if error == "invalid_client":
        headers["www-authenticate"] = 'Basic realm="wattfare consent domain"'
    body = json.dumps({"error": error, "error_description": description})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _json(payload: dict[str, Any]) -> Response:
    body = json.dumps(payload, separators=(",", ":"))
    return Response(body, media_type="application/json", headers={"cache-control": "no-store", "pragma": "no-cache"})


class TokenEndpoint:
    def __init__(self, store: DomainStore, grants: GrantLifecycle, settings: DomainSettings) -> None:
        self._store = store
        self._grants = grants
        self._settings = settings

    def routes(self) -> list[Route]:
        return [
            Route("/token", self.token, methods=["POST"]),
            Route("/revoke", self.revoke, methods=["POST"]),
        ]

    async def authenticate_client(self, request: Request) -> App | None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        app = await self._store.find_app(unquote_plus(client_id)) if client_id else None
        expected = app.secret_hash if app is not None else _NO_SUCH_SECRET
        matches = hmac.compare_digest(expected, secret_hash(unquote_plus(secret)))
        return app if app is not None and matches else None

    async def token(self, request: Request) -> Response:
        app = await self.authenticate_client(request)
        if app is None:
            return _oauth_error("invalid_client", "authenticate with HTTP Basic: publishable key and secret key", 401)
        try:
            form = await read_form(request, timeout=self._settings.body_timeout_seconds)
        except FormError as exc:
            return _oauth_error("invalid_request", str(exc), 408 if exc.status == 408 else 400)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only grant_type=authorization_code is supported")
        code, redirect_uri, verifier = form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
        if not code or not redirect_uri or not verifier:
            return _oauth_error("invalid_request", "code, redirect_uri and code_verifier are required")
        if not 43 <= len(verifier) <= 128 or not set(verifier) <= _VERIFIER_CHARS:
            return _oauth_error("invalid_grant", "the code_verifier is malformed")
        now = int(time.time())
        used = await self._store.use_code(code_hash(code), now)
        if used is None:
            return _oauth_error("invalid_grant", "the code is unknown")
        record, first_use = used
        if not first_use:
            await self._revoke_replayed(record.grant_id)
            return _oauth_error("invalid_grant", "the code was used already")
        if record.app_id != app.id or record.redirect_uri != redirect_uri:
            return _oauth_error("invalid_grant", "the code was issued to another client or redirect_uri")
        if record.expires_at <= now:
            return _oauth_error("invalid_grant", "the code has expired")
        if not challenge_matches(verifier, record.code_challenge):
            return _oauth_error("invalid_grant", "the code_verifier does not match the code_challenge")
        try:
            grant, funding_key = await self._grants.mint(
                app, record.user_id, record.monthly_cap, record.code_hash, grant_requests=record.grant_requests
            )
        except GrantRevokedMeanwhile:
            return _oauth_error("invalid_grant", "the code was used already")
        except UpstreamFailure as exc:
            logger.warning("minting an upstream key for app %s failed: %s", app.id, exc)
            return _oauth_error("temporarily_unavailable", "the upstream could not mint a key; connect again", 503)
        if grant.one_time:
            # A one-time grant (docs/consent-protocol.md, §4.1): a request count and a total cap.
            return _json(
                {
                    "grant_id": grant.id,
                    "token_type": "grant",
                    "funding_key": funding_key,
                    "upstream_url": self._settings.upstream_url.rstrip("/"),
                    "grant_requests": grant.grant_requests,
                    "max_usd": wire_usd(grant.monthly_cap),
                    "hard_limit_usd": wire_usd(grant.monthly_cap),
                    "expires_at": grant.expires_at,
                }
            )
        return _json(
            {
                "grant_id": grant.id,
                "token_type": "funding",
                "funding_key": funding_key,
                "upstream_url": self._settings.upstream_url.rstrip("/"),
                "monthly_usd": wire_usd(grant.monthly_cap),
                "period": "month",
                "hard_limit_usd": wire_usd(grant.monthly_cap),
                "expires_at": None,
            }
        )

    async def _revoke_replayed(self, grant_id: str | None) -> None:
        grant = await self._store.get_grant(grant_id) if grant_id else None
        if grant is not None and grant.status != GrantState.REVOKED:
            logger.warning("a code was used twice: revoking grant %s minted from it", grant.id)
            await self._grants.revoke(grant, reason="code_replayed", notify=True)

    async def revoke(self, request: Request) -> Response:
        app = await self.authenticate_client(request)
        if app is None:
            return _oauth_error("invalid_client", "authenticate with HTTP Basic: publishable key and secret key", 401)
        try:
            form = await read_form(request, timeout=self._settings.body_timeout_seconds)
        except FormError as exc:
            return _oauth_error("invalid_request", str(exc), 408 if exc.status == 408 else 400)
        token = form.get("token")
        if not token:
            return _oauth_error("invalid_request", "token is required")
        grant = await self._store.get_grant(token)
        # RFC 7009 §2.2: 200 whether or not the token existed; another client's grant is left alone.
        if grant is not None and grant.app_id == app.id and grant.status != GrantState.REVOKED:
            await self._grants.revoke(grant, reason="app", notify=False)
        return Response(b"", status_code=200, headers={"cache-control": "no-store"})
