"""``ConsentDomain``: the self-hostable reference consent domain, as one ASGI app.

```python
domain = ConsentDomain(DomainSettings(database_url=..., public_url="https://consent.example.com",
                                      management_key="sk-or-v1-…"))
uvicorn.run(domain)          # or: wattfare consent-domain serve …
```

It serves the discovery document, the consent screen, the token and revocation
endpoints, the user's dashboard and (unless a deployment brings its own
``authenticate``) an email-and-password login, and runs the outbox worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._lifespan import run_lifespan
from .._redaction import protect_logs
from ..consent._protocol import DISCOVERY_PATH, PROTOCOL_VERSION
from ..keys import AppKeys
from ..money import Micros
from . import budget_store
from .authorize import ConsentScreen
from .budgets import BudgetKeeper, BudgetView
from .config import DomainSettings
from .dashboard import Dashboard
from .grants import GrantLifecycle
from .login import Authenticate, PasswordLogin, add_user, end_sessions, set_password
from .notifier import Notifier
from .operator import OperatorPage
from .outbox import Outbox
from .registration import register_app
from .session_store import SessionStore
from .sessions import Sessions
from .storage import DomainStore
from .token_endpoint import TokenEndpoint
from .upstream import UpstreamKeys

__all__ = ["ConsentDomain"]

logger = logging.getLogger("wattfare_embed.consent_domain")


class ConsentDomain:
    """The reference consent domain. Starts itself on its first request, or with ``async with``.

    ``authenticate(request) -> user id | None`` replaces the built-in login; pass
    ``login_url`` too, where a signed-out user is sent with ``?next=<path>``.
    """

    def __init__(
        self,
        settings: DomainSettings,
        *,
        authenticate: Authenticate | None = None,
        login_url: str = "/login",
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        protect_logs(settings.management_key, settings.session_secret)
        self.store = DomainStore(settings.database_url, auto_migrate=settings.auto_migrate)
        self.sessions = SessionStore(self.store)
        self.upstream = UpstreamKeys(
            settings.upstream_url,
            settings.management_key,
            lambda: self.http,
            timeout_seconds=settings.upstream_timeout_seconds,
        )
        self.outbox = Outbox(self.store, self.upstream, lambda: self.http, settings)
        self.grants = GrantLifecycle(self.store, self.upstream, self.outbox, settings)
        # One budget per user across apps: the keys' limits kept within it (budgets.py).
        self.budgets = BudgetKeeper(self.store, self.upstream, settings)
        self.grants.budgets = self.budgets
        self.outbox.notifier = notifier
        self.budgets.notify_enabled = notifier is not None
        self._authenticate = authenticate
        self._login_url = login_url
        self._http: aiohttp.ClientSession | None = None
        self._asgi: ASGIApp | None = None
        self._worker: asyncio.Task[None] | None = None
        self._budget_worker: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the consent domain is not started")
        return self._http

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        if self._asgi is not None:
            return
        async with self._start_lock:
            if self._asgi is not None:
                return
            await self.store.open()
            secret = self.settings.session_secret or await self.store.setting(
                "session_secret", secrets.token_urlsafe(48)
            )
            protect_logs(secret)
            self._http = aiohttp.ClientSession()
            self._asgi = Starlette(routes=self._routes(secret))
            self._worker = asyncio.get_running_loop().create_task(self.outbox.run_forever())
            self._budget_worker = asyncio.get_running_loop().create_task(self.budgets.run_forever())

    async def shutdown(self) -> None:
        if self._budget_worker is not None:
            self._budget_worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._budget_worker
            self._budget_worker = None
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._asgi = None
        await self.store.close()

    async def __aenter__(self) -> ConsentDomain:
        await self.startup()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, self.startup, self.shutdown)
            return
        await self.startup()
        assert self._asgi is not None
        await self._asgi(scope, receive, send)

    # -- administration ---------------------------------------------------------------------

    async def register_app(
        self, *, name: str, redirect_uris: Sequence[str], webhook_url: str, live: bool = True, allow_http: bool = False
    ) -> AppKeys:
        """Register an app; returns its key pair (print it: the secret key is not kept)."""
        await self.store.open()
        return await register_app(
            self.store,
            name=name,
            redirect_uris=redirect_uris,
            webhook_url=webhook_url,
            live=live,
            allow_http=allow_http,
        )

    async def add_user(self, email: str, password: str) -> str:
        """Add a built-in email-and-password user; returns the user id."""
        await self.store.open()
        return await add_user(self.store, email, password)

    async def set_password(self, email: str, password: str) -> int:
        """Give a built-in user a new password, ending every session they have; returns how many."""
        await self.store.open()
        return await set_password(self.store, self.sessions, email, password)

    async def end_sessions(self, email: str | None = None) -> int:
        """End every sign-in session of one built-in user (of everyone when ``email`` is None), at
        once: their cookies stop working wherever they were copied to. Returns how many ended."""
        await self.store.open()
        return await end_sessions(self.store, self.sessions, email)

    async def set_budget(self, user_id: str | None, monthly_budget: Micros | None) -> None:
        """Set one user's budget across every app (``user_id=None``: the default of everyone without
        one; ``monthly_budget=None``: remove it), and re-limit their keys to fit at once."""
        await self.store.open()
        if user_id is None:
            await budget_store.set_default_budget(self.store, monthly_budget)
            if self._http is not None:
                await self.budgets.sync_all()
            return
        await budget_store.set_user_budget(self.store, user_id, monthly_budget, int(time.time()))
        if self._http is not None:
            async with self.budgets.lock(user_id):
                await self.budgets.rebalance(user_id)

    async def budget(self, user_id: str) -> BudgetView:
        """The user's budget, what their apps spent this month and each key's limit (re-limits them)."""
        async with self.budgets.lock(user_id):
            view, _ = await self.budgets.rebalance(user_id)
        return view

    def discovery(self) -> dict[str, Any]:
        issuer = self.settings.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": issuer + "/authorize",
            "token_endpoint": issuer + "/token",
            "revocation_endpoint": issuer + "/revoke",
            "protocol_version": PROTOCOL_VERSION,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
            "periods_supported": ["month"],
            "one_time_grants_supported": True,  # grant_requests + max_usd (docs/consent-protocol.md, §2.1)
            "webhook_events_supported": ["grant.revoked", "grant.updated"],
            "webhook_signature_versions_supported": ["v1"],
        }

    def _routes(self, secret: str) -> list[BaseRoute]:
        settings = self.settings
        sessions = Sessions(
            secret, self.sessions, max_age_seconds=settings.session_ttl_seconds, secure=settings.secure_cookies
        )
        routes: list[BaseRoute] = []
        authenticate = self._authenticate
        if authenticate is None:
            login = PasswordLogin(self.store, sessions, settings)
            authenticate = login.authenticate
            routes.extend(login.routes())

        async def discovery(request: Request) -> Response:
            return JSONResponse(self.discovery(), headers={"cache-control": "public, max-age=300"})

        routes.append(Route(DISCOVERY_PATH, discovery, methods=["GET"]))
        routes.extend(ConsentScreen(self.store, sessions, settings, authenticate, self._login_url).routes())
        routes.extend(TokenEndpoint(self.store, self.grants, settings).routes())
        dashboard = Dashboard(self.store, sessions, self.grants, self.budgets, settings, authenticate, self._login_url)
        routes.extend(dashboard.routes())
        operator = OperatorPage(self.store, sessions, self.budgets, settings, authenticate, self._login_url)
        routes.extend(operator.routes())
        return routes
