"""Sign-in sessions, kept server-side, and the CSRF token every form of the consent domain carries.

A session is a row (``wcd_sessions``) named by the SHA-256 of a random id; the cookie carries
that id, signed (itsdangerous) so a forged cookie is turned away without asking the database.
Signing out, a password change or the operator's ``end-sessions`` deletes the row, and the
cookie stops working at once, wherever it was copied to. Cookies are httpOnly, SameSite=Lax
and, over https, ``__Host-``-prefixed: the browser takes them only from this exact origin,
never from a sibling subdomain.

CSRF: a random ``wcd_csrf`` cookie, and in every form an HMAC of it and of what the form acts
for — the session (or, with a deployment's own login, the signed-in user) — under the domain's
secret. Another site can neither read the cookie nor compute the HMAC, and a token from one
session is worthless in another, so a form posted from elsewhere is refused before anything
happens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from .session_store import SessionStore

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "CsrfError", "Sessions", "SignedIn"]

SESSION_COOKIE = "wcd_session"
CSRF_COOKIE = "wcd_csrf"
CSRF_FIELD = "csrf"
HOST_PREFIX = "__Host-"  # Secure, Path=/ and no Domain, or the browser refuses the cookie
_STATE_KEY = "wcd_signed_in"


class CsrfError(Exception):
    """A form arrived without a valid CSRF token."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The built-in session a request carries."""

    id_hash: str
    user_id: str


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, secret: str, store: SessionStore, *, max_age_seconds: int, secure: bool) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="wattfare consent domain session")
        self._csrf_key = hashlib.sha256(b"wattfare consent domain csrf\x00" + secret.encode()).digest()
        self._store = store
        self._max_age = max_age_seconds
        self._secure = secure
        prefix = HOST_PREFIX if secure else ""
        self.session_cookie = prefix + SESSION_COOKIE
        self.csrf_cookie = prefix + CSRF_COOKIE

    # -- sign-in sessions -------------------------------------------------------------------

    async def current(self, request: Request) -> SignedIn | None:
        """The live session the request's cookie names, or ``None`` (looked up once a request)."""
        if _STATE_KEY in request.scope.setdefault("state", {}):
            found: SignedIn | None = request.scope["state"][_STATE_KEY]
            return found
        found = None
        cookie = request.cookies.get(self.session_cookie)
        if cookie and len(cookie) <= 200:
            try:
                session_id: Any = self._serializer.loads(cookie, max_age=self._max_age)
            except BadSignature:
                session_id = None
            if isinstance(session_id, str) and session_id:
                user_id = await self._store.user_of(_hash(session_id), int(time.time()))
                found = SignedIn(_hash(session_id), user_id) if user_id is not None else None
        request.scope["state"][_STATE_KEY] = found
        return found

    async def user_id(self, request: Request) -> str | None:
        """The signed-in built-in user, or ``None``."""
        signed_in = await self.current(request)
        return signed_in.user_id if signed_in is not None else None

    async def sign_in(self, request: Request, response: Response, user_id: str) -> None:
        """Start a new session (ending the one the request had: no session id survives a sign-in)."""
        previous = await self.current(request)
        if previous is not None:
            await self._store.end(previous.id_hash)
        session_id = secrets.token_urlsafe(32)
        now = int(time.time())
        await self._store.start(_hash(session_id), user_id, now, now + self._max_age)
        request.scope["state"][_STATE_KEY] = SignedIn(_hash(session_id), user_id)
        response.set_cookie(
            self.session_cookie,
            self._serializer.dumps(session_id),
            max_age=self._max_age,
            httponly=True,
            samesite="lax",
            secure=self._secure,
        )

    async def sign_out(self, request: Request, response: Response) -> None:
        signed_in = await self.current(request)
        if signed_in is not None:
            await self._store.end(signed_in.id_hash)
        request.scope["state"][_STATE_KEY] = None
        response.delete_cookie(self.session_cookie, httponly=True, samesite="lax", secure=self._secure)

    # -- CSRF -------------------------------------------------------------------------------

    async def binding(self, request: Request, user_id: str | None = None) -> str:
        """What a form acts for: the built-in session, else the user a deployment's own login
        names, else nobody (the sign-in form)."""
        signed_in = await self.current(request)
        if signed_in is not None:
            return "session:" + signed_in.id_hash
        return "user:" + user_id if user_id else ""

    def csrf_token(self, request: Request, binding: str) -> tuple[str, str | None]:
        """The token for this browser's forms, and a new cookie value to set when it had none."""
        cookie = request.cookies.get(self.csrf_cookie)
        fresh = None
        if not cookie or len(cookie) > 100:
            cookie = fresh = secrets.token_urlsafe(32)
        return self._mac(cookie, binding), fresh

    def set_csrf_cookie(self, response: Response, value: str | None) -> None:
        if value is not None:
            response.set_cookie(self.csrf_cookie, value, httponly=True, samesite="lax", secure=self._secure)

    def check_csrf(self, request: Request, form: Mapping[str, Any], binding: str) -> None:
        cookie = request.cookies.get(self.csrf_cookie)
        sent = form.get(CSRF_FIELD)
        if not cookie or not isinstance(sent, str) or not hmac.compare_digest(self._mac(cookie, binding), sent):
            raise CsrfError("the form's CSRF token is missing or wrong")

    def _mac(self, cookie: str, binding: str) -> str:
        return hmac.new(self._csrf_key, f"{cookie}\x00{binding}".encode(), hashlib.sha256).hexdigest()
