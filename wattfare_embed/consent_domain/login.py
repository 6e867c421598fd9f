"""Who the user is: a deployment's own ``authenticate(request)``, or the built-in password login.

A deployment with its own accounts passes ``authenticate`` (and ``login_url``)
to ``ConsentDomain``; self-hosters use the built-in email-and-password login,
with passwords hashed by argon2 (argon2-cffi) and sessions kept server-side (``sessions.py``).

Each password check costs a 64 MiB argon2 hash, and anyone can ask for one, so sign-ins
are throttled before any hash runs (per client address and per account, ``throttle.py``)
and at most ``max_concurrent_logins`` checks run at once; the rest are told to retry.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._gate import ConcurrencyGate
from .._http import safe_return_path
from ..errors import InvalidRequestError, RateLimitedError
from .config import DomainSettings
from .forms import FormError, read_form
from .pages import error_page, login_page, page_response
from .session_store import SessionStore
from .sessions import CsrfError, Sessions
from .storage import DomainStore
from .throttle import LoginThrottle

__all__ = [
    "Authenticate",
    "PasswordLogin",
    "add_user",
    "call_authenticate",
    "end_sessions",
    "normalize_email",
    "refusal_page",
    "set_password",
]

Authenticate = Callable[[Request], "str | Awaitable[str | None] | None"]

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
    return _hasher.hash("wattfare consent domain: no such user")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _plausible_email(email: str) -> bool:
    # Anything else is no user's, decided without asking the database (a NUL breaks PostgreSQL).
    return 0 < len(email) <= 320 and "@" in email and email.isprintable()


async def add_user(store: DomainStore, email: str, password: str) -> str:
    """Create a built-in user; returns the user id. ``ValueError`` for a bad or taken email."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320:
        raise ValueError("give an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    return await store.add_user(email, password_hash, int(time.time()))


async def set_password(store: DomainStore, sessions: SessionStore, email: str, password: str) -> int:
    """Give a built-in user a new password and end every session they have; returns how many ended.
    ``ValueError`` for an unknown email or a short password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    found = await store.find_user(normalize_email(email))
    if found is None:
        raise ValueError(f"no user has the email {normalize_email(email)!r}")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    return await sessions.set_password(found[0], password_hash)


async def end_sessions(store: DomainStore, sessions: SessionStore, email: str | None) -> int:
    """End every session of the user with ``email`` (of everyone when ``None``); returns how many."""
    if email is None:
        return await sessions.end_all()
    found = await store.find_user(normalize_email(email))
    if found is None:
        raise ValueError(f"no user has the email {normalize_email(email)!r}")
    return await sessions.end_all(found[0])


async def call_authenticate(authenticate: Authenticate, request: Request) -> str | None:
    result = authenticate(request)
    if inspect.isawaitable(result):
        result = await result
    return result or None


class PasswordLogin:
    """``GET/POST /login`` and ``POST /logout`` for the built-in users."""

    def __init__(self, store: DomainStore, sessions: Sessions, settings: DomainSettings) -> None:
        self._store = store
        self._sessions = sessions
        self._settings = settings
        self._domain_name = settings.name
        self.throttle = LoginThrottle(
            per_address=settings.login_attempts_per_address, per_account=settings.login_failures_per_account
        )
        self._checks = ConcurrencyGate(settings.max_concurrent_logins, "sign-ins")

    async def authenticate(self, request: Request) -> str | None:
        return await self._sessions.user_id(request)

    async def verify(self, email: str, password: str) -> str | None:
        """The user id when the password is right; argon2 runs off the event loop."""
        email = normalize_email(email)
        found = await self._store.find_user(email) if _plausible_email(email) else None
        user_id, password_hash = found if found is not None else (None, _dummy_hash())
        try:
            await asyncio.to_thread(_hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return user_id

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.show, methods=["GET"]),
            Route("/login", self.submit, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    async def show(self, request: Request) -> Response:
        next_path = _next_path(request.query_params.get("next"))
        return await self._page(request, next_path, app_name=await self._asking_app(next_path))

    async def _asking_app(self, next_path: str) -> str | None:
        """The registered app whose consent screen comes after signing in (looked up, never taken from the URL)."""
        path, _, query = next_path.partition("?")
        client_id = parse_qs(query).get("client_id", [""])[0] if path == "/authorize" else ""
        app = await self._store.find_app(client_id) if client_id else None
        return app.name if app is not None else None

    async def submit(self, request: Request) -> Response:
        try:
            fields = await read_form(request, timeout=self._settings.body_timeout_seconds)
            self._sessions.check_csrf(request, fields, await self._sessions.binding(request))
        except FormError as exc:
            return self._refused(str(exc), exc.status)
        except CsrfError as exc:
            return self._refused(str(exc), 403)
        next_path = _next_path(fields.get("next"))
        email = fields.get("email", "")
        address, account = request.client.host if request.client else "", normalize_email(email)
        wait = self.throttle.retry_after(address, account)
        if wait is not None:
            error = f"Too many sign-in attempts. Try again in {_duration(wait)}."
            return await self._retry_page(request, next_path, error, email, 429, wait)
        try:
            with self._checks.admit():
                user_id = await self.verify(email, fields.get("password", ""))
        except RateLimitedError:
            error = "Too many people are signing in right now. Try again in a moment."
            return await self._retry_page(request, next_path, error, email, 503, 1)
        self.throttle.attempted(address, account, succeeded=user_id is not None)
        if user_id is None:
            app_name = await self._asking_app(next_path)
            return await self._page(
                request, next_path, error="Wrong email or password.", email=email, status=401, app_name=app_name
            )
        response = RedirectResponse(next_path, status_code=303)
        await self._sessions.sign_in(request, response, user_id)
        return response

    async def logout(self, request: Request) -> Response:
        try:
            fields = await read_form(request, timeout=self._settings.body_timeout_seconds)
            self._sessions.check_csrf(request, fields, await self._sessions.binding(request))
        except FormError as exc:
            return self._refused(str(exc), exc.status)
        except CsrfError as exc:
            return self._refused(str(exc), 403)
        response = RedirectResponse("/login", status_code=303)
        await self._sessions.sign_out(request, response)  # the session ends here, not just its cookie
        return response

    async def _page(
        self,
        request: Request,
        next_path: str,
        *,
        error: str | None = None,
        email: str = "",
        status: int = 200,
        app_name: str | None = None,
        retry_after: int | None = None,
    ) -> Response:
        csrf, fresh = self._sessions.csrf_token(request, await self._sessions.binding(request))
        page = login_page(
            next_path=next_path, csrf=csrf, domain_name=self._domain_name, error=error, email=email, app_name=app_name
        )
        response = page_response(page, status=status)
        if retry_after is not None:
            response.headers["retry-after"] = str(retry_after)
        self._sessions.set_csrf_cookie(response, fresh)
        return response

    async def _retry_page(
        self, request: Request, next_path: str, error: str, email: str, status: int, retry_after: int
    ) -> Response:
        app_name = await self._asking_app(next_path)
        return await self._page(
            request, next_path, error=error, email=email, status=status, retry_after=retry_after, app_name=app_name
        )

    def _refused(self, message: str, status: int) -> Response:
        return refusal_page(message, status, self._domain_name)


def refusal_page(message: str, status: int, domain_name: str, *, nothing: str = "") -> Response:
    """The page for a form that could not be read (403, 400, or 408 when it came too slowly)."""
    response = page_response(error_page("Please try again", f"{message}.{nothing}", domain_name), status=status)
    if status == 408:
        response.headers["connection"] = "close"  # the rest of the body may still be on its way
    return response


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def _next_path(value: object) -> str:
    """Where to go after signing in: a path on this domain, never another site."""
    try:
        return safe_return_path(value, default="/dashboard")
    except InvalidRequestError:
        return "/dashboard"
