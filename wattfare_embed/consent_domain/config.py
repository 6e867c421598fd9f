"""``DomainSettings``: how one reference consent domain is run."""

from __future__ import annotations

from dataclasses import dataclass

from ..money import MICROS_PER_USD, Micros

__all__ = ["DEFAULT_DOMAIN_DATABASE_URL", "DomainSettings"]

DEFAULT_DOMAIN_DATABASE_URL = "sqlite+aiosqlite:///wattfare-consent-domain.db"


@dataclass(frozen=True, slots=True)
class DomainSettings:
    """Everything a consent domain is configured with.

    ```python
    DomainSettings(
        database_url="postgresql+asyncpg://consent@db/consent",
        public_url="https://consent.example.com",   # the issuer apps are configured with
        management_key="sk-or-v1-…",                 # an OpenRouter management key: it pays
    )
    ```
    """

    database_url: str = DEFAULT_DOMAIN_DATABASE_URL
    public_url: str = "http://127.0.0.1:8002"
    upstream_url: str = "https://openrouter.ai/api/v1"
    management_key: str | None = None
    # Start-up migrates the wcd_ tables; off for a deployment that runs
    # `wattfare consent-domain migrate` in a release step (start-up then only checks them).
    auto_migrate: bool = True
    # Signs login sessions and CSRF tokens; generated once and kept in the database when None.
    session_secret: str | None = None
    name: str = "Wattfare"  # how the domain calls itself on its pages ("your Wattfare budget")
    default_monthly_cap: Micros = 10 * MICROS_PER_USD
    max_monthly_cap: Micros = 1000 * MICROS_PER_USD
    code_ttl_seconds: int = 600
    grant_ttl_seconds: int = 24 * 3600  # how long a one-time grant lives (the app may end it sooner)
    session_ttl_seconds: int = 12 * 3600
    upstream_timeout_seconds: float = 15.0
    webhook_timeout_seconds: float = 10.0
    # Webhook and key-deletion retries: base * 2**attempt, capped, until max_attempts.
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    max_attempts: int = 16
    poll_seconds: float = 5.0
    # A grant replaced by a new consent is announced a little later, once the app holds the new one.
    replaced_notice_delay_seconds: float = 30.0
    # Every posted form (sign-in included) must arrive whole within this many seconds.
    body_timeout_seconds: float = 30.0
    # Password checks (64 MiB of argon2 each) running at once; the next sign-in is told to retry.
    max_concurrent_logins: int = 4
    # Sign-in attempts per client address a minute, and failed ones per account in 15 minutes.
    login_attempts_per_address: int = 10
    login_failures_per_account: int = 10
    # Per-user budgets: how often every budgeted user's keys are re-read and re-limited, and the
    # shares of a budget past which the user is told (through the domain's notifier).
    budget_sync_seconds: float = 30.0
    budget_alert_thresholds: tuple[int, ...] = (50, 80, 100)

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")
