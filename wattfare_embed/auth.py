"""Who is calling: the app's server (secret key) or a browser acting for one user (session token)."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from urllib.parse import unquote

from starlette.requests import Request

from ._http import bearer_token
from .errors import AuthError, InvalidRequestError, NotConnectedError
from .keys import AppKeys
from .tokens import SessionClaims, SessionTokens

__all__ = [
    "USER_ENCODING_HEADER",
    "USER_HEADER",
    "app_user_id_of",
    "model_caller",
    "require_secret_key",
    "require_session",
    "secret_key_matches",
]

USER_HEADER = "x-wattfare-user"
USER_ENCODING_HEADER = "x-wattfare-user-encoding"


# C0 controls, DEL and C1 controls: one search in C, not a Python test per character (every request).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def app_user_id_of(value: object, what: str = "appUserId") -> str:
    """An app's user id, by the one rule every entry point applies (sessions, ``X-Wattfare-User``,
    ``wf.user()``, the CLI), so what a header can carry and what the store keys on never differ:

    1 to 255 characters of Unicode text (no lone surrogates, which no database stores), no
    control characters (a NUL would not even store in PostgreSQL), and no whitespace at either
    end: HTTP strips it from header values, so ``" alice"`` could be named in a session but
    would be charged as ``"alice"`` through the proxy.
    """
    if not isinstance(value, str) or not value or len(value) > 255:
        raise InvalidRequestError(f"{what} must be a non-empty string of at most 255 characters")
    if _CONTROL.search(value):
        raise InvalidRequestError(f"{what} must not contain control characters")
    if value.strip() != value:
        raise InvalidRequestError(f"{what} must not start or end with whitespace")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"{what} must be text (it holds a lone UTF-16 surrogate)") from exc
    return value


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
    headers: Mapping[str, str],
    keys: AppKeys,
    tokens: SessionTokens,
    *,
    allow_session_tokens: bool,
    allow_anonymous_user: bool = False,
    api_key_header: str | None = None,
) -> str:
    """The app user a model call spends for: the secret key plus ``X-Wattfare-User``, or (when the
    app allows browser inference) a session token. ``api_key_header`` names a header that may carry
    the key instead of ``Authorization`` (``x-api-key``, what the anthropic SDK sends)."""
    authorization = headers.get("authorization", "")
    if not authorization and api_key_header and headers.get(api_key_header):
        authorization = "Bearer " + headers[api_key_header]
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("send `Authorization: Bearer sk_…` with `X-Wattfare-User: <your user id>`")
    if token.startswith("sk_"):
        if not secret_key_matches(token, keys):
            raise AuthError("the secret key is not this app's")
        # Spaces and tabs around a header value are not part of it (RFC 9110 §5.5), whichever
        # parser the server runs; no stored id starts or ends with whitespace either.
        user = headers.get(USER_HEADER, "").strip(" \t")
        if headers.get(USER_ENCODING_HEADER, "").lower() == "percent":
            # HTTP headers carry bytes, not text: ids beyond ASCII travel percent-encoded (UTF-8).
            try:
                user = unquote(user, errors="strict")
            except UnicodeDecodeError as exc:
                raise InvalidRequestError("X-Wattfare-User is not percent-encoded UTF-8") from exc
        if not user:
            if allow_anonymous_user:
                return user
            # Treated like an unknown user: there is nobody whose budget could pay.
            raise NotConnectedError("name the app user to charge in the X-Wattfare-User header")
        return app_user_id_of(user, "X-Wattfare-User")
    if not allow_session_tokens:
        raise AuthError(
            "model calls need the app's secret key; browser inference with session tokens is off "
            "(Wattfare(allow_browser_inference=True) turns it on)"
        )
    return tokens.verify(token).app_user_id
