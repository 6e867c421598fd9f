"""``/authorize``: the consent screen, and the single-use code it sends back to the app.

The client and its ``redirect_uri`` are checked first and exactly; until both
are known good, every problem is an error page here and nothing redirects (no
open redirect, RFC 6749 §4.1.2.1). After that, problems go back to the app as
``error=…``. Codes are random, stored by hash, single-use, 10 minutes, bound to
the client, the redirect URI, the user, the approved cap and the PKCE S256 challenge.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..consent._protocol import parse_wire_usd, wire_usd
from ..money import Micros
from .config import DomainSettings
from .forms import FormError, read_form
from .login import Authenticate, call_authenticate, refusal_page
from .pages import consent_page, error_page, grant_consent_page, page_response
from .records import App, CodeRecord
from .sessions import CsrfError, Sessions
from .storage import DomainStore

__all__ = ["ConsentScreen", "code_hash"]

_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_PASSED_ON = ("client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method")
_REQUESTS = re.compile(r"^[0-9]{1,4}$")
MAX_GRANT_REQUESTS = 1000


def _grant_ask(params: Mapping[str, str]) -> tuple[int, Micros] | str | None:
    """A one-time grant's ``(requests, max cap)`` (docs/consent-protocol.md, §2.1), an error
    description when it is malformed, or ``None`` for a monthly connection."""
    if "grant_requests" not in params:
        return None
    text = params.get("grant_requests", "")
    if not _REQUESTS.match(text) or not 1 <= int(text) <= MAX_GRANT_REQUESTS:
        return f"grant_requests must be a whole number from 1 to {MAX_GRANT_REQUESTS}"
    try:
        return int(text), parse_wire_usd(params.get("max_usd", ""))
    except ValueError:
        return "a one-time grant needs max_usd, a positive amount"


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class _NoRedirect(Exception):
    """The client or its redirect URI is wrong: show an error here, never redirect."""


class ConsentScreen:
    def __init__(
        self,
        store: DomainStore,
        sessions: Sessions,
        settings: DomainSettings,
        authenticate: Authenticate,
        login_url: str,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._settings = settings
        self._authenticate = authenticate
        self._login_url = login_url

    def routes(self) -> list[Route]:
        return [
            Route("/authorize", self.show, methods=["GET"]),
            Route("/authorize", self.decide, methods=["POST"]),
        ]

    async def show(self, request: Request) -> Response:
        params = {name: value for name, value in request.query_params.items()}
        try:
            app, redirect_uri = await self._client(params)
        except _NoRedirect as exc:
            return self._error("This link cannot be used", str(exc), 400)
        state = params.get("state")
        problem = _problem(params)
        if problem is not None:
            return _back(redirect_uri, state, error=problem[0], error_description=problem[1])
        ask = _grant_ask(params)
        if isinstance(ask, str):
            return _back(redirect_uri, state, error="invalid_request", error_description=ask)
        if ask is not None and ask[1] > self._settings.max_monthly_cap:
            description = f"max_usd may be at most {wire_usd(self._settings.max_monthly_cap)}"
            return _back(redirect_uri, state, error="invalid_request", error_description=description)
        try:
            requested = parse_wire_usd(params.get("monthly_usd") or wire_usd(self._settings.default_monthly_cap))
        except ValueError:
            return _back(redirect_uri, state, error="invalid_request", error_description="monthly_usd is not an amount")
        user_id = await call_authenticate(self._authenticate, request)
        if user_id is None:
            next_path = request.url.path + ("?" + request.url.query if request.url.query else "")
            separator = "&" if "?" in self._login_url else "?"
            return RedirectResponse(f"{self._login_url}{separator}{urlencode({'next': next_path})}", status_code=303)
        if ask is not None:
            return await self._grant_screen(request, app, params, user_id, ask)
        cap = wire_usd(min(requested, self._settings.max_monthly_cap))
        return await self._screen(request, app, params, user_id, cap, asked=wire_usd(requested))

    async def decide(self, request: Request) -> Response:
        try:
            fields = await read_form(request, timeout=self._settings.body_timeout_seconds)
        except FormError as exc:
            return refusal_page(str(exc), exc.status, self._settings.name, nothing=" Nothing was approved.")
        user_id = await call_authenticate(self._authenticate, request)
        try:
            # Bound to the session the screen was shown in: a token from another session is refused.
            self._sessions.check_csrf(request, fields, await self._sessions.binding(request, user_id))
        except CsrfError as exc:
            if user_id is None:
                return self._error("Your session has ended", "Sign in and connect again from the app.", 401)
            return self._error("Please try again", f"{exc}. Nothing was approved.", 403)
        try:
            app, redirect_uri = await self._client(fields)
        except _NoRedirect as exc:
            return self._error("This link cannot be used", str(exc), 400)
        state = fields.get("state")
        problem = _problem(fields)
        if problem is not None:
            return _back(redirect_uri, state, error=problem[0], error_description=problem[1])
        if user_id is None:
            return self._error("Your session has ended", "Sign in and connect again from the app.", 401)
        if fields.get("decision") != "approve":
            return _back(redirect_uri, state, error="access_denied")
        ask = _grant_ask(fields)
        if isinstance(ask, str):
            return _back(redirect_uri, state, error="invalid_request", error_description=ask)
        if ask is not None:
            # A one-time grant's terms are approved as asked (shown, never edited), within the maximum.
            requests, cap = ask[0], min(ask[1], self._settings.max_monthly_cap)
            return await self._issue_code(app, user_id, redirect_uri, state, fields, cap, requests)
        asked = fields.get("asked_usd", "")
        try:
            cap = parse_wire_usd(fields.get("monthly_usd", ""))
        except ValueError:
            typed = fields.get("monthly_usd", "")
            return await self._screen(request, app, fields, user_id, typed, asked=asked, error="Enter an amount.")
        if cap > self._settings.max_monthly_cap:
            error = f"The cap may be at most ${wire_usd(self._settings.max_monthly_cap)}."
            return await self._screen(request, app, fields, user_id, wire_usd(cap), asked=asked, error=error)
        return await self._issue_code(app, user_id, redirect_uri, state, fields, cap, None)

    async def _issue_code(
        self,
        app: App,
        user_id: str,
        redirect_uri: str,
        state: str | None,
        fields: Mapping[str, str],
        cap: Micros,
        grant_requests: int | None,
    ) -> Response:
        code = secrets.token_urlsafe(32)
        now = int(time.time())
        await self._store.add_code(
            CodeRecord(
                code_hash=code_hash(code),
                app_id=app.id,
                user_id=user_id,
                redirect_uri=redirect_uri,
                code_challenge=fields["code_challenge"],
                monthly_cap=cap,
                created_at=now,
                expires_at=now + self._settings.code_ttl_seconds,
                used_at=None,
                grant_id=None,
                grant_requests=grant_requests,
            )
        )
        return _back(redirect_uri, state, code=code)

    async def _grant_screen(
        self, request: Request, app: App, params: Mapping[str, str], user_id: str, ask: tuple[int, Micros]
    ) -> Response:
        csrf, fresh = self._sessions.csrf_token(request, await self._sessions.binding(request, user_id))
        fields = {name: params.get(name, "") for name in _PASSED_ON}
        requests, cap = ask
        page = grant_consent_page(
            app_name=app.name,
            requests=requests,
            cap_usd=wire_usd(cap),
            payer=await self._store.user_email(user_id) or user_id,
            expires_in_hours=self._settings.grant_ttl_seconds // 3600,
            fields={**fields, "csrf": csrf, "grant_requests": str(requests), "max_usd": wire_usd(cap)},
            domain_name=self._settings.name,
        )
        response = page_response(page, form_targets=[fields["redirect_uri"]])
        self._sessions.set_csrf_cookie(response, fresh)
        return response

    async def _client(self, params: Mapping[str, str]) -> tuple[App, str]:
        client_id = params.get("client_id") or ""
        app = await self._store.find_app(client_id) if client_id else None
        if app is None:
            raise _NoRedirect("The app asking for your budget is not registered here.")
        redirect_uri = params.get("redirect_uri") or ""
        # Exact string comparison, as registered: no prefix, no normalisation (RFC 9700 §2.1).
        if redirect_uri not in app.redirect_uris:
            raise _NoRedirect(f"{app.name} did not register this return address, so you are not sent there.")
        return app, redirect_uri

    async def _screen(
        self,
        request: Request,
        app: App,
        params: Mapping[str, str],
        user_id: str,
        cap_usd: str,
        *,
        asked: str,
        error: str | None = None,
    ) -> Response:
        csrf, fresh = self._sessions.csrf_token(request, await self._sessions.binding(request, user_id))
        fields = {name: params.get(name, "") for name in _PASSED_ON}
        page = consent_page(
            app_name=app.name,
            cap_usd=cap_usd,
            asked_usd=asked,
            max_usd=wire_usd(self._settings.max_monthly_cap),
            payer=await self._store.user_email(user_id) or user_id,
            fields={**fields, "csrf": csrf},
            domain_name=self._settings.name,
            error=error,
        )
        response = page_response(page, status=400 if error else 200, form_targets=[fields["redirect_uri"]])
        self._sessions.set_csrf_cookie(response, fresh)
        return response

    def _error(self, title: str, message: str, status: int) -> Response:
        return page_response(error_page(title, message, self._settings.name), status=status)


def _problem(params: Mapping[str, str]) -> tuple[str, str] | None:
    """What is wrong with a request whose client and redirect URI are fine: ``(error, description)``."""
    if params.get("response_type", "code") != "code":
        return "unsupported_response_type", "only response_type=code is supported"
    if params.get("code_challenge_method") != "S256" or not _CHALLENGE.match(params.get("code_challenge", "")):
        return "invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256"
    if len(params.get("state", "")) > 1024:
        return "invalid_request", "state is too long"
    return None


def _back(redirect_uri: str, state: str | None, **params: str) -> Response:
    query = {**params, **({"state": state} if state else {})}
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(query)}", status_code=303)
