"""Who is calling: the app's server (secret key) or a browser acting for one user (session token)."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from ._http import bearer_token
from .errors import AuthError
from .keys import AppKeys
from .tokens import SessionClaims, SessionTokens

__all__ = ["require_secret_key", "require_session", "secret_key_matches"]


def secret_key_matches(token: str, keys: AppKeys) -> bool:
    return hmac.compare_digest(token.encode(), keys.secret_key.encode())


def require_secret_key(request: Request, keys: AppKeys) -> None:
    token = bearer_token(request)
    if token is None:
        raise AuthError("send the app's secret key as `Authorization: Bearer sk_…`")
    if not token.startswith("sk_"):
        raise AuthError("this endpoint needs the app's secret key, not a session token")
    if not secret_key_matches(token, keys):
        raise AuthError("the secret key is not this app's")


def require_session(request: Request, tokens: SessionTokens) -> SessionClaims:
    token = bearer_token(request)
    if token is None:
        raise AuthError("send a session token as `Authorization: Bearer <token>` (mint one with POST /session)")
    if token.startswith("sk_"):
        # Answered without comparing: a secret key must never be sent from a browser.
        raise AuthError("this endpoint takes a session token, never the secret key")
    return tokens.verify(token)
