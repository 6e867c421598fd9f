"""``Wattfare``: the one object an app makes. An ASGI app to mount, and the server-side API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptography.exceptions import InvalidTag
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ._dispatch import DirectRoutes
from ._http import parse_monthly_usd
from ._lifespan import run_lifespan
from ._redaction import protect_logs
from ._upstream_http import UpstreamHttp, open_upstream_http
from .alerts import DEFAULT_THRESHOLDS, AlertCallback, Alerts
from .auth import app_user_id_of
from .config import ResolveUser, Settings, env_or
from .consent import AuthorityContext, ConsentAuthority, DevConsent
from .crypto import CredentialBox
from .errors import ConfigurationError, InvalidRequestError, UnavailableError, WattfareError
from .keys import AppKeys, parse_keys
from .metering.reconcile import GIVE_UP_SECONDS
from .metering.wire import send_error
from .money import Micros
from .status import ConnectionStatus
from .store import ConnectionRecord, ConnectionState, GrantRecord, PoolSizes, SqlStore, Store
from .store._grants import connection_view
from .store.outage import STORE_OUTAGES
from .telemetry import Recorder, Telemetry
from .tokens import SessionTokens

if TYPE_CHECKING:
    from .client import WattfareUser
    from .grant_client import WattfareGrant
    from .receipts import UsagePage

__all__ = ["Session", "Wattfare"]

logger = logging.getLogger("wattfare_embed")


class Session(dict[str, Any]):
    """``{"token": …, "expiresAt": …}``, ready to return as JSON."""

    @property
    def token(self) -> str:
        return str(self["token"])

    @property
    def expires_at(self) -> int:
        return int(self["expiresAt"])


class Wattfare:
    """Let your users pay for their own AI, inside your ASGI app.

    ```python
    wf = Wattfare(
        secret_key=...,                  # or WATTFARE_SECRET_KEY
        publishable_key=...,             # or WATTFARE_PUBLISHABLE_KEY
        resolve_user=lambda request: request.session.get("user_id"),
        app_name="Acme Chat",
    )
    app.mount("/wattfare", wf)
    ```

    The instance is an ASGI app. It starts itself on the first request (mounted
    apps get no lifespan events); hosts that manage start-up use ``async with wf:``.
    """

    def __init__(
        self,
        *,
        secret_key: str | None = None,
        publishable_key: str | None = None,
        database_url: str | None = None,
        store: Store | None = None,
        consent: ConsentAuthority | None = None,
        resolve_user: ResolveUser | None = None,
        app_name: str = "this app",
        default_monthly_usd: float | int | str | Decimal = 10,
        max_monthly_usd: float | int | str | Decimal = 1000,
        upstream_url: str | None = None,
        upstream_api_key: str | None = None,
        session_ttl_seconds: int = 600,
        allow_browser_inference: bool = False,
        allow_unpriced_models: bool = False,
        public_url: str | None = None,
        credential_key: str | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
        upstream_timeout_seconds: float = 300.0,
        auto_migrate: bool | None = None,
        pool_sizes: PoolSizes | None = None,
        max_request_hold_usd: float | int | str | Decimal | None = 1,
        media_hold_usd: float | int | str | Decimal | None = None,
        body_timeout_seconds: float = 30.0,
        allowed_hosts: Sequence[str] | None = None,
        max_concurrent_webhooks: int = 32,
        max_open_consents_per_user: int = 10,
        telemetry: Telemetry | None = None,
        default_grant_usd: float | int | str | Decimal = 1,
        max_grant_usd: float | int | str | Decimal = 20,
        grant_ttl_seconds: int = 24 * 3600,
        alert_thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
        alert_webhook_url: str | None = None,
        alert_retry_seconds: float = 30.0,
        reservation_ttl_seconds: int | None = None,
        upstream_keepalive_seconds: float | None = None,
        settle_journal_dir: str | Path | None = None,
    ) -> None:
        secret = env_or(secret_key, "WATTFARE_SECRET_KEY")
        publishable = env_or(publishable_key, "WATTFARE_PUBLISHABLE_KEY")
        if not secret or not publishable:
            raise ConfigurationError(
                "Wattfare needs secret_key and publishable_key (or WATTFARE_SECRET_KEY and "
                "WATTFARE_PUBLISHABLE_KEY); `wattfare keys new --test` prints a pair"
            )
        self.keys: AppKeys = parse_keys(secret, publishable)
        self.settings = Settings.build(
            database_url=database_url,
            upstream_url=upstream_url,
            upstream_api_key=upstream_api_key,
            app_name=app_name,
            default_monthly_usd=default_monthly_usd,
            max_monthly_usd=max_monthly_usd,
            session_ttl_seconds=session_ttl_seconds,
            allow_browser_inference=allow_browser_inference,
            allow_unpriced_models=allow_unpriced_models,
            public_url=public_url,
            credential_key=credential_key,
            max_body_bytes=max_body_bytes,
            upstream_timeout_seconds=upstream_timeout_seconds,
            auto_migrate=auto_migrate,
            pool_sizes=pool_sizes,
            max_request_hold_usd=max_request_hold_usd,
            media_hold_usd=media_hold_usd,
            body_timeout_seconds=body_timeout_seconds,
            allowed_hosts=allowed_hosts,
            max_concurrent_webhooks=max_concurrent_webhooks,
            max_open_consents_per_user=max_open_consents_per_user,
            telemetry=telemetry,
            default_grant_usd=default_grant_usd,
            max_grant_usd=max_grant_usd,
            grant_ttl_seconds=grant_ttl_seconds,
            reservation_ttl_seconds=reservation_ttl_seconds,
            upstream_keepalive_seconds=upstream_keepalive_seconds,
            settle_journal_dir=settle_journal_dir,
        )
        if consent is None:
            if self.keys.live:
                raise ConfigurationError(
                    "live keys need a real consent authority: consent=OpenRouterConsent() or HostedConsent(...)"
                )
            consent = DevConsent(auto_approve=True)
        consent.check(self.keys)
        # From here on no log record of the package can carry these (nor anything shaped like a key).
        protect_logs(
            self.keys.secret_key,
            self.settings.upstream_api_key,
            self.settings.credential_key,
            self.settings.telemetry.scrape_token,
        )
        self.consent: ConsentAuthority = consent
        self.resolve_user = resolve_user
        self.tokens = SessionTokens(self.keys.secret_key, self.keys.app_id, session_ttl_seconds)
        self.credentials = CredentialBox(self.settings.credential_key or self.keys.secret_key)
        self.store: Store = (
            store
            if store is not None
            else SqlStore(
                self.settings.database_url,
                auto_migrate=self.settings.auto_migrate,
                pool_sizes=self.settings.pool_sizes,
            )
        )
        # A revoke handled by another process stops this one's calls at once where the store can
        # tell (PostgreSQL's LISTEN/NOTIFY); elsewhere the proxy's poll finds it.
        self.store.listen_for_revocations(self.connection_ended)
        self.recorder = Recorder(self.settings.telemetry, self.keys.secret_key)
        self._http: aiohttp.ClientSession | None = None
        self._upstream: UpstreamHttp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._start_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._connection_listeners: list[Callable[[str], None]] = []
        # Threshold alerts and token counts, fed by the proxy after each settle, off the request's path.
        self.alerts = Alerts(self, alert_thresholds, alert_webhook_url, retry_seconds=alert_retry_seconds)
        from .proxy import Proxy

        self.proxy = Proxy(self)
        self._on_start.append(self._start_sweeper)
        self._on_start.append(self.alerts.start)
        self._on_stop.append(self.alerts.stop)
        self._asgi: ASGIApp = self._build_app()

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store and the upstream client; safe to call any number of times."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.store.open()
            self._upstream = open_upstream_http(
                read_timeout=self.settings.upstream_timeout_seconds,
                keepalive_seconds=self.settings.upstream_keepalive_seconds,
            )
            self._http = self._upstream.session
            self.recorder.start()
            for hook in self._on_start:
                await hook()
            self._loop = asyncio.get_running_loop()
            self._started = True

    async def shutdown(self) -> None:
        if not self._started:
            return
        self._started = False
        self._loop = None
        running = list(self._background)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        for hook in reversed(self._on_stop):
            with contextlib.suppress(Exception):
                await hook()
        if self._upstream is not None:
            await self._upstream.close()
            self._upstream, self._http = None, None
        await self.store.close()

    async def __aenter__(self) -> Wattfare:
        await self.startup()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    def run_in_background(self, factory: Callable[[], Awaitable[None]]) -> None:
        """Keep a task alive for the embed's lifetime (cancelled on shutdown)."""

        async def guarded() -> None:
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("wattfare background task failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)  # finished tasks are not kept forever

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the embed was started on (its store and HTTP client live there), or None."""
        return self._loop

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the embed is not started; mount it, call `await wf.startup()` or use `async with wf`")
        return self._http

    @property
    def upstream(self) -> UpstreamHttp:
        """The upstream client of metered calls (the pool of ``http``, retrying a reset-unread POST once)."""
        if self._upstream is None:
            raise RuntimeError("the embed is not started; mount it, call `await wf.startup()` or use `async with wf`")
        return self._upstream

    def authority_context(self) -> AuthorityContext:
        return AuthorityContext(
            keys=self.keys,
            app_name=self.settings.app_name,
            http=self.http,
            upstream_url=self.settings.upstream_url,
            upstream_api_key=self.settings.upstream_api_key,
        )

    # -- ASGI -------------------------------------------------------------------------------

    def _build_app(self) -> ASGIApp:
        from .endpoints import routes
        from .monitoring import monitoring_routes
        from .receipts import receipt_routes
        from .webhooks import webhook_routes

        metered = self.proxy.direct_endpoints()
        proxy_routes = [
            *(Route(path, _Endpoint(endpoint), methods=["POST"]) for path, endpoint in metered.items()),
            Route("/api/v1/models", _Endpoint(self.proxy.models), methods=["GET"]),
            # Model ids hold a slash (`openai/gpt-4o-mini`), so the id is the rest of the path.
            Route("/api/v1/models/{model_id:path}", _Endpoint(self.proxy.model), methods=["GET"]),
        ]
        self.routes: list[Route] = [*proxy_routes, *(route for route in routes(self) if isinstance(route, Route))]
        self.routes.extend(receipt_routes(self))
        self.routes.extend(webhook_routes(self))
        self.routes.extend(monitoring_routes(self))
        router = Router(list(self.routes), default=_not_found)
        routed = ExceptionMiddleware(
            router,
            handlers={
                WattfareError: _error_response,
                HTTPException: _http_error_response,
                **dict.fromkeys(STORE_OUTAGES, _store_outage_response),
            },
        )
        return DirectRoutes(metered, routed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, self.startup, self.shutdown)
            return
        if not self._started:
            try:
                await self.startup()
            except STORE_OUTAGES:
                logger.warning("the embed could not start: its store is unavailable", exc_info=True)
                if scope["type"] == "http":
                    await send_error(send, _STORE_DOWN)
                return
        await self._asgi(scope, receive, send)

    # -- the server-side API ----------------------------------------------------------------

    async def create_session(
        self, app_user_id: str, *, monthly_usd: float | int | str | Decimal | None = None
    ) -> Session:
        """Mint a session token for one of your users (to hand to their browser)."""
        app_user_id_of(app_user_id)
        requested: Micros | None = None
        if monthly_usd is not None:
            requested = parse_monthly_usd(
                str(monthly_usd) if isinstance(monthly_usd, Decimal) else monthly_usd,
                maximum=self.settings.max_monthly_cap,
            )
        token, expires_at = self.tokens.mint(app_user_id, requested)
        return Session(token=token, expiresAt=expires_at)

    def user(self, app_user_id: str) -> WattfareUser:
        """A handle on one of your users: ``status()``, ``openai()``, ``disconnect()``, ``model()``."""
        from .client import WattfareUser

        return WattfareUser(self, app_user_id)

    def grant(self, grant_token: str) -> WattfareGrant:
        """A handle on a one-time grant a visitor approved: ``status()``, ``openai()``, ``model()``."""
        from .grant_client import WattfareGrant

        return WattfareGrant(self, grant_token)

    async def status(self, app_user_id: str) -> ConnectionStatus:
        """A user's connection and budget; ``connected=False`` (never an error) when there is none."""
        app_user_id_of(app_user_id)
        await self.startup()
        await self.proxy.unsettled.caught_up(app_user_id)  # every charge this process has answered
        now = int(time.time())
        record = await self.store.get_connection(self.keys.app_id, app_user_id, now)
        return ConnectionStatus.of(app_user_id, record, now)

    async def caught_up(self, app_user_id: str | None = None) -> None:
        """Wait (at most 15 s) until the settles of answers this process has already sent for
        ``app_user_id`` (every user: ``None``) are written. ``status``, ``usage`` and a grant's
        ``status`` do it themselves; call it before reading ``store`` directly (a ledger listing,
        a report) to see every charge this process has answered."""
        await self.proxy.unsettled.caught_up(app_user_id)

    async def lower_cap(self, app_user_id: str, monthly_cap: Micros) -> ConnectionStatus | None:
        """Lower the cap at once; ``None`` when there is no active connection or it would raise it."""
        app_user_id_of(app_user_id)
        await self.startup()
        await self.proxy.unsettled.caught_up(app_user_id)  # the status it returns has every answered charge
        now = int(time.time())
        record = await self.store.lower_cap(self.keys.app_id, app_user_id, monthly_cap, now)
        return ConnectionStatus.of(app_user_id, record, now) if record else None

    async def disconnect(self, app_user_id: str) -> None:
        """Revoke a user's connection here and ask the authority to revoke the grant."""
        app_user_id_of(app_user_id)
        await self.startup()
        now = int(time.time())
        record = await self.store.get_connection(self.keys.app_id, app_user_id, now)
        if record is None:
            return
        await self.store.set_status(self.keys.app_id, app_user_id, ConnectionState.REVOKED, now, drop_credential=True)
        self.connection_ended(record.id)
        if record.status is ConnectionState.ACTIVE:
            await self.revoke_with_authority(self.open_credential(record), record.grant_id)

    async def usage(self, app_user_id: str, *, cursor: str | None = None, limit: int = 50) -> UsagePage:
        """A page of the user's charged requests this period, newest first (what ``GET /api/v1/usage``
        answers the user's browser); ``page.next_cursor`` asks for the next page."""
        from .receipts import usage_page

        app_user_id_of(app_user_id)
        return await usage_page(self, app_user_id, cursor=cursor, limit=limit)

    def on_alert(self, callback: AlertCallback) -> None:
        """Call ``callback(alert)`` (sync or async) once for each threshold a user's spend passes this
        month (``alert_thresholds``, 50/80/100 % of the cap by default); see ``BudgetAlert``."""
        self.alerts.on_alert(callback)

    def on_startup(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` during start-up, after the store and the HTTP client are open."""
        self._on_start.append(hook)

    def on_connection_ended(self, listener: Callable[[str], None]) -> None:
        """Be told (with the connection id) when a connection is revoked here."""
        self._connection_listeners.append(listener)

    def connection_ended(self, connection_id: str) -> None:
        """Stop this connection's open streams at their next chunk."""
        for listener in self._connection_listeners:
            listener(connection_id)

    async def _start_sweeper(self) -> None:
        async def sweep_forever() -> None:
            while True:
                try:
                    await self.proxy.sweep()
                    await self.store.prune_consent_requests(int(time.time()))
                    await self._forget_ended_grant_credentials()
                except Exception:
                    logger.exception("the wattfare sweeper failed; trying again later")
                await asyncio.sleep(self.settings.sweep_interval_seconds)

        self.run_in_background(sweep_forever)

    async def _forget_ended_grant_credentials(self) -> None:
        """Drop the sealed funding credentials of one-time grants long ended: after its end a grant's
        last requests can still be held (``reservation_ttl_seconds``), then reconciled (a day)."""
        forget = getattr(self.store, "forget_ended_grant_credentials", None)  # a store of the app's own may lack it
        if forget is None:
            return
        now = int(time.time())
        await forget(self.keys.app_id, now - self.settings.reservation_ttl_seconds - GIVE_UP_SECONDS, now)

    async def revoke_with_authority(self, credential: str | None, grant_id: str | None) -> None:
        try:
            await self.consent.revoke(credential, grant_id, self.authority_context())
        except Exception:
            # Revocation here already stopped spending; the authority's copy is best effort.
            logger.warning("the consent authority did not confirm revoking grant %s", grant_id, exc_info=True)

    def open_credential_of_grant(self, record: GrantRecord) -> str | None:
        """A one-time grant's funding credential (sealed for ``app_id/grant_id``), or ``None``."""
        return self.open_credential(connection_view(record, ""))

    def open_credential(self, record: ConnectionRecord) -> str | None:
        """The connection's funding credential, or ``None`` when it is gone or no longer opens.

        A credential that fails to decrypt (the key was rotated, the row damaged) is treated as
        missing: the upstream then refuses the call and the connection is marked funding_invalid.
        """
        if record.sealed_credential is None:
            return None
        try:
            return self.credentials.open(record.sealed_credential, f"{record.app_id}/{record.app_user_id}")
        except (ValueError, InvalidTag):
            logger.warning("the funding credential of connection %s does not decrypt", record.id)
            return None


async def _error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WattfareError)
    return Response(exc.body(), status_code=exc.status, headers=exc.response_headers())


_STORE_DOWN = UnavailableError("the budget store is unavailable; try again shortly")


async def _store_outage_response(request: Request, exc: Exception) -> Response:
    """A store failure anywhere on a request's path: the typed 503, never a bare 500."""
    logger.warning("a request failed because the store is unavailable", exc_info=exc)
    return Response(_STORE_DOWN.body(), status_code=503, headers=_STORE_DOWN.response_headers())


async def _http_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = InvalidRequestError(exc.detail if exc.status_code != 405 else "this method is not allowed here")
    return Response(error.body(), status_code=exc.status_code, headers=error.response_headers())


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    error = InvalidRequestError(f"no such endpoint: {scope.get('path', '')}")
    response = Response(error.body(), status_code=404, headers=error.response_headers())
    await response(scope, receive, send)


class _Endpoint:
    """A raw ASGI callable Starlette routes to as it is (a bound method would be wrapped)."""

    __slots__ = ("_call",)

    def __init__(self, call: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._call(scope, receive, send)
