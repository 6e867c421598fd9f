"""Settings: keyword arguments first, then environment variables, then defaults."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from starlette.requests import Request

from .errors import ConfigurationError
from .metering.settle_journal import default_journal_dir
from .money import Micros, micros_from_usd
from .store.pools import PoolSizes
from .telemetry import Telemetry

__all__ = ["ResolveUser", "Settings", "env_or"]

ResolveUser = Callable[[Request], "str | Awaitable[str | None] | None"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///wattfare.db"
DEFAULT_UPSTREAM_URL = "https://openrouter.ai/api/v1"
# How long a reservation may stay open before the sweeper takes its process for dead: longer than
# any request (a stream may run for many minutes), short enough that a crash frees holds soon.
DEFAULT_RESERVATION_TTL_SECONDS = 3600
# An idle upstream connection is dropped after this long, before the upstream's own idle timeout
# (often 5 s or more) can close it under a request that is being sent on it.
DEFAULT_UPSTREAM_KEEPALIVE_SECONDS = 4.0


def env_or(value: str | None, variable: str, default: str | None = None) -> str | None:
    if value is not None:
        return value
    return os.environ.get(variable) or default


def _flag(value: bool | None, variable: str, default: bool) -> bool:
    if value is not None:
        return value
    text = os.environ.get(variable, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{variable} must be true or false, not {text!r}")


def _seconds(value: int | None, variable: str, default: int) -> int:
    if value is not None:
        return value
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{variable} must be a whole number of seconds, not {text!r}") from None


def _usd(value: float | int | str | Decimal, what: str) -> Micros:
    try:
        micros = micros_from_usd(value if not isinstance(value, float) else repr(value))
    except ValueError as exc:
        raise ConfigurationError(f"{what} must be an amount in US dollars, not {value!r}") from exc
    if micros <= 0:
        raise ConfigurationError(f"{what} must be more than zero")
    return micros


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the embed was configured with, checked once at construction."""

    database_url: str
    upstream_url: str
    upstream_api_key: str | None
    app_name: str
    default_monthly_cap: Micros
    max_monthly_cap: Micros
    session_ttl_seconds: int
    consent_ttl_seconds: int
    allow_browser_inference: bool
    allow_unpriced_models: bool
    public_url: str | None
    credential_key: str | None
    max_body_bytes: int
    upstream_timeout_seconds: float
    body_timeout_seconds: float
    allowed_hosts: tuple[str, ...]
    max_concurrent_webhooks: int
    max_open_consents_per_user: int
    reservation_ttl_seconds: int
    upstream_keepalive_seconds: float
    settle_journal_dir: Path | None
    sweep_interval_seconds: float
    models_ttl_seconds: float
    auto_migrate: bool
    pool_sizes: PoolSizes
    telemetry: Telemetry
    max_request_hold: Micros | None = None
    media_hold: Micros | None = None
    default_grant_cap: Micros = 1_000_000
    max_grant_cap: Micros = 20_000_000
    grant_ttl_seconds: int = 24 * 3600

    @classmethod
    def build(
        cls,
        *,
        database_url: str | None,
        upstream_url: str | None,
        upstream_api_key: str | None,
        app_name: str,
        default_monthly_usd: float | int | str | Decimal,
        max_monthly_usd: float | int | str | Decimal,
        session_ttl_seconds: int,
        allow_browser_inference: bool,
        allow_unpriced_models: bool,
        public_url: str | None,
        credential_key: str | None,
        max_body_bytes: int,
        upstream_timeout_seconds: float,
        auto_migrate: bool | None = None,
        pool_sizes: PoolSizes | None = None,
        max_request_hold_usd: float | int | str | Decimal | None = None,
        media_hold_usd: float | int | str | Decimal | None = None,
        body_timeout_seconds: float = 30.0,
        allowed_hosts: Sequence[str] | None = None,
        max_concurrent_webhooks: int = 32,
        max_open_consents_per_user: int = 10,
        telemetry: Telemetry | None = None,
        default_grant_usd: float | int | str | Decimal = 1,
        max_grant_usd: float | int | str | Decimal = 20,
        grant_ttl_seconds: int = 24 * 3600,
        reservation_ttl_seconds: int | None = None,
        upstream_keepalive_seconds: float | None = None,
        settle_journal_dir: str | Path | None = None,
    ) -> Settings:
        default_cap = _usd(default_monthly_usd, "default_monthly_usd")
        max_cap = _usd(max_monthly_usd, "max_monthly_usd")
        if default_cap > max_cap:
            raise ConfigurationError("default_monthly_usd is above max_monthly_usd")
        if session_ttl_seconds < 30:
            raise ConfigurationError("session_ttl_seconds must be at least 30")
        if not 0 < body_timeout_seconds <= 3600:
            raise ConfigurationError("body_timeout_seconds must be more than 0 and at most 3600")
        if max_concurrent_webhooks < 1 or max_open_consents_per_user < 1:
            raise ConfigurationError("max_concurrent_webhooks and max_open_consents_per_user must be at least 1")
        default_grant, max_grant = _usd(default_grant_usd, "default_grant_usd"), _usd(max_grant_usd, "max_grant_usd")
        if default_grant > max_grant:
            raise ConfigurationError("default_grant_usd is above max_grant_usd")
        # A grant is for a visit, not a subscription: a day by default, a month at most.
        if not 60 <= grant_ttl_seconds <= 30 * 24 * 3600:
            raise ConfigurationError("grant_ttl_seconds must be at least 60 and at most 30 days (2592000)")
        ttl = _seconds(reservation_ttl_seconds, "WATTFARE_RESERVATION_TTL_SECONDS", DEFAULT_RESERVATION_TTL_SECONDS)
        if not 1 <= ttl <= 7 * 86400:
            raise ConfigurationError("reservation_ttl_seconds must be at least 1 and at most a week (604800)")
        keepalive = upstream_keepalive_seconds
        if keepalive is None:
            keepalive = float(
                _seconds(None, "WATTFARE_UPSTREAM_KEEPALIVE_SECONDS", 0) or DEFAULT_UPSTREAM_KEEPALIVE_SECONDS
            )
        if not 0 < keepalive <= 300:
            raise ConfigurationError("upstream_keepalive_seconds must be more than 0 and at most 300")
        upstream = cast(str, env_or(upstream_url, "WATTFARE_UPSTREAM_URL", DEFAULT_UPSTREAM_URL)).rstrip("/")
        if not upstream.startswith(("http://", "https://")):
            raise ConfigurationError(f"upstream_url must be an http(s) URL, not {upstream!r}")
        database = cast(str, env_or(database_url, "WATTFARE_DATABASE_URL", DEFAULT_DATABASE_URL))
        journal = env_or(None if settle_journal_dir is None else str(settle_journal_dir), "WATTFARE_SETTLE_JOURNAL_DIR")
        return cls(
            database_url=database,
            upstream_url=upstream,
            upstream_api_key=env_or(upstream_api_key, "OPENROUTER_API_KEY"),
            app_name=app_name,
            default_monthly_cap=default_cap,
            max_monthly_cap=max_cap,
            session_ttl_seconds=session_ttl_seconds,
            consent_ttl_seconds=600,
            allow_browser_inference=allow_browser_inference,
            allow_unpriced_models=allow_unpriced_models,
            public_url=(env_or(public_url, "WATTFARE_PUBLIC_URL") or "").rstrip("/") or None,
            credential_key=env_or(credential_key, "WATTFARE_CREDENTIAL_KEY"),
            max_body_bytes=max_body_bytes,
            upstream_timeout_seconds=upstream_timeout_seconds,
            body_timeout_seconds=body_timeout_seconds,
            allowed_hosts=_allowed_hosts(allowed_hosts),
            max_concurrent_webhooks=max_concurrent_webhooks,
            max_open_consents_per_user=max_open_consents_per_user,
            reservation_ttl_seconds=ttl,
            upstream_keepalive_seconds=keepalive,
            settle_journal_dir=Path(journal) if journal else default_journal_dir(database),
            sweep_interval_seconds=60.0,
            models_ttl_seconds=600.0,
            auto_migrate=_flag(auto_migrate, "WATTFARE_AUTO_MIGRATE", True),
            pool_sizes=pool_sizes or PoolSizes(),
            max_request_hold=None
            if max_request_hold_usd is None
            else _usd(max_request_hold_usd, "max_request_hold_usd"),
            media_hold=None if media_hold_usd is None else _usd(media_hold_usd, "media_hold_usd"),
            telemetry=telemetry or Telemetry(),
            default_grant_cap=default_grant,
            max_grant_cap=max_grant,
            grant_ttl_seconds=grant_ttl_seconds,
        )


def _allowed_hosts(hosts: Sequence[str] | None) -> tuple[str, ...]:
    """Host names (``app.example.com``, ``*.example.com``), lower-cased; ``WATTFARE_ALLOWED_HOSTS``
    (comma-separated) when none are given. Empty: any host (set ``public_url`` instead)."""
    if hosts is None:
        hosts = [host for host in (os.environ.get("WATTFARE_ALLOWED_HOSTS") or "").split(",") if host.strip()]
    if isinstance(hosts, str):
        raise ConfigurationError("allowed_hosts is a list of host names, not one string")
    checked = []
    for host in hosts:
        name = host.strip().lower()
        bracketed = name.startswith("[") and name.endswith("]")  # an IPv6 address
        if not name or "/" in name or (":" in name and not bracketed):
            raise ConfigurationError(f"allowed_hosts takes host names without scheme or port, not {host!r}")
        checked.append(name.strip("[]"))
    return tuple(checked)


async def call_resolve_user(resolve_user: ResolveUser | None, request: Request) -> str | None:
    """Run the app's ``resolve_user``, sync or async; anything but a non-empty string is "nobody"."""
    if resolve_user is None:
        return None
    result: Any = resolve_user(request)
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return None
    user = str(result)
    return user or None
