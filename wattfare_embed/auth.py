"""Who is calling: the app's server (secret key) or a browser acting for one user (session token)."""

from __future__ import annotations

import hmac
from urllib.parse import unquote

from starlette.datastructures import Headers
from starlette.requests import Request

from ._http import bearer_token
from .errors import AuthError, InvalidRequestError, NotConnectedError
from .keys import AppKeys
from .tokens import SessionClaims, SessionTokens

__all__ = [
    "USER_ENCODING_HEADER",
    "USER_HEADER",
    "model_caller",
    "require_secret_key",
    "require_session",
    "secret_key_matches",
]

USER_HEADER = "x-wattfare-user"
USER_ENCODING_HEADER = "x-wattfare-user-encoding"


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


def model_caller(
    headers: Headers,
    keys: AppKeys,
    tokens: SessionTokens,
    *,
    allow_session_tokens: bool,
    allow_anonymous_user: bool = False,
) -> str:
    """The app user a model call spends for: the secret key plus ``X-Wattfare-User``, or (when the
    app allows browser inference) a session token."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("send `Authorization: Bearer sk_…` with `X-Wattfare-User: <your user id>`")
    if token.startswith("sk_"):
        if not secret_key_matches(token, keys):
            raise AuthError("the secret key is not this app's")
        user = headers.get(USER_HEADER, "")
        if headers.get(USER_ENCODING_HEADER, "").lower() == "percent":
            # HTTP headers carry bytes, not text: ids beyond ASCII travel percent-encoded (UTF-8).
            try:
                user = unquote(user, errors="strict")
            except UnicodeDecodeError as exc:
                raise InvalidRequestError("X-Wattfare-User is not percent-encoded UTF-8") from exc
        if not user and not allow_anonymous_user:
            # Treated like an unknown user: there is nobody whose budget could pay.
            raise NotConnectedError("name the app user to charge in the X-Wattfare-User header")
        if len(user) > 255:
            raise InvalidRequestError("X-Wattfare-User may be at most 255 characters")
        return user
    if not allow_session_tokens:
        raise AuthError(
            "model calls need the app's secret key; browser inference with session tokens is off "
            "(Wattfare(allow_browser_inference=True) turns it on)"
        )
    return tokens.verify(token).app_user_id
