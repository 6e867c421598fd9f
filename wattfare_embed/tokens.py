"""Session tokens: short-lived HS256 JWTs that let a browser act for one app user."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from .crypto import derive_key
from .errors import AuthError
from .money import Micros

__all__ = ["SessionClaims", "SessionTokens"]

_AUDIENCE = "wattfare:session"
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a valid session token says."""

    app_id: str
    app_user_id: str
    requested_monthly: Micros | None
    expires_at: int
    token_id: str


class SessionTokens:
    """Mints and checks session tokens for one app.

    The signing key is derived from the app's secret key, so the secret itself
    never signs anything a browser holds.
    """

    def __init__(self, secret_key: str, app_id: str, ttl_seconds: int = 600) -> None:
        self._key = derive_key(secret_key, b"wattfare session tokens v1")
        self._app_id = app_id
        self._issuer = f"wattfare_embed:{app_id}"
        self.ttl_seconds = ttl_seconds

    def mint(self, app_user_id: str, requested_monthly: Micros | None = None) -> tuple[str, int]:
        """Return ``(token, expires_at)`` for one user."""
        now = int(time.time())
        expires_at = now + self.ttl_seconds
        claims: dict[str, object] = {
            "iss": self._issuer,
            "aud": _AUDIENCE,
            "sub": app_user_id,
            "app": self._app_id,
            "iat": now,
            "exp": expires_at,
            "jti": secrets.token_urlsafe(12),
        }
        if requested_monthly is not None:
            claims["lim"] = requested_monthly
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), expires_at

    def verify(self, token: str) -> SessionClaims:
        """Check signature, algorithm, audience, issuer and expiry; raise ``AuthError`` otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the session token has expired; ask for a new one") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("the session token is not valid for this app") from exc
        if claims.get("app") != self._app_id or not isinstance(claims["sub"], str):
            raise AuthError("the session token is not valid for this app")
        limit = claims.get("lim")
        return SessionClaims(
            app_id=self._app_id,
            app_user_id=claims["sub"],
            requested_monthly=limit if isinstance(limit, int) else None,
            expires_at=int(claims["exp"]),
            token_id=str(claims["jti"]),
        )
