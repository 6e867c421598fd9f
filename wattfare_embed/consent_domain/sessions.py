"""Signed-cookie login sessions and CSRF tokens for every form of the consent domain.

Sessions are itsdangerous-signed cookies (httpOnly, SameSite=Lax, Secure over
https) that expire on their own. Over https both cookies are ``__Host-``-prefixed, so
the browser takes them only from this exact origin, never from a sibling subdomain.

CSRF uses the signed double-submit pattern: a random ``wcd_csrf`` cookie, and in every
form an HMAC of it under the domain's secret. Another site can neither read the cookie
nor compute the HMAC, so a form posted from elsewhere is refused before anything happens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "CsrfError", "Sessions"]

SESSION_COOKIE = "wcd_session"
CSRF_COOKIE = "wcd_csrf"
CSRF_FIELD = "csrf"
HOST_PREFIX = "__Host-"  # Secure, Path=/ and no Domain, or the browser refuses the cookie


class CsrfError(Exception):
    """A form arrived without a valid CSRF token."""


class Sessions:
    def __init__(self, secret: str, *, max_age_seconds: int, secure: bool) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="wattfare consent domain session")
        self._csrf_key = hashlib.sha256(b"wattfare consent domain csrf\x00" + secret.encode()).digest()
        self._max_age = max_age_seconds
        self._secure = secure
        prefix = HOST_PREFIX if secure else ""
        self.session_cookie = prefix + SESSION_COOKIE
        self.csrf_cookie = prefix + CSRF_COOKIE

    # -- login sessions ---------------------------------------------------------------------

    def user_id(self, request: Request) -> str | None:
        """The signed-in built-in user, or ``None``."""
        cookie = request.cookies.get(self.session_cookie)
        if not cookie:
            return None
        try:
            claims: Any = self._serializer.loads(cookie, max_age=self._max_age)
        except BadSignature:
            return None
        user = claims.get("u") if isinstance(claims, dict) else None
        return user if isinstance(user, str) and user else None

    def sign_in(self, response: Response, user_id: str) -> None:
        token = self._serializer.dumps({"u": user_id, "n": secrets.token_hex(8)})
        response.set_cookie(
            self.session_cookie,
            token,
            max_age=self._max_age,
            httponly=True,
            samesite="lax",
            secure=self._secure,
        )

    def sign_out(self, response: Response) -> None:
        response.delete_cookie(self.session_cookie, httponly=True, samesite="lax", secure=self._secure)

    # -- CSRF -------------------------------------------------------------------------------

    def csrf_token(self, request: Request) -> tuple[str, str | None]:
        """The token for this browser's forms, and a new cookie value to set when it had none."""
        cookie = request.cookies.get(self.csrf_cookie)
        fresh = None
        if not cookie or len(cookie) > 100:
            cookie = fresh = secrets.token_urlsafe(32)
        return self._mac(cookie), fresh

    def set_csrf_cookie(self, response: Response, value: str | None) -> None:
        if value is not None:
            response.set_cookie(self.csrf_cookie, value, httponly=True, samesite="lax", secure=self._secure)

    def check_csrf(self, request: Request, form: Mapping[str, Any]) -> None:
        cookie = request.cookies.get(self.csrf_cookie)
        sent = form.get(CSRF_FIELD)
        if not cookie or not isinstance(sent, str) or not hmac.compare_digest(self._mac(cookie), sent):
            raise CsrfError("the form's CSRF token is missing or wrong")

    def _mac(self, cookie: str) -> str:
        return hmac.new(self._csrf_key, cookie.encode(), hashlib.sha256).hexdigest()
