"""The fake's API keys: who may call, with what limit, and the key objects the API reports (§2)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from ._fake_wire import JSONObject, OpenRouterError, iso_time, usd

LIMIT_RESETS = frozenset({"daily", "weekly", "monthly"})

_NO_CREDENTIALS = "No cookie auth credentials found"
_UNKNOWN_KEY = "User not found."


@dataclass(eq=False)
class FakeKey:
    """One key. Mutable on purpose: tests set `usage`, `limit` or `disabled` directly."""

    secret: str
    name: str
    created_at: str
    limit: Decimal | None = None
    limit_reset: str | None = None
    usage: Decimal = Decimal(0)
    disabled: bool = False
    include_byok_in_limit: bool = False
    is_management: bool = False
    # Keys issued through OAuth belong to the user, so the app's management key cannot see them (§1.4).
    via_oauth: bool = False
    updated_at: str | None = None

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.secret.encode()).hexdigest()

    @property
    def label(self) -> str:
        # A fingerprint such as "sk-or-v1-abc...123", never the secret.
        return f"{self.secret[:12]}...{self.secret[-3:]}"

    @property
    def limit_remaining(self) -> Decimal | None:
        # Not clamped at zero: concurrent requests can overshoot a cap, and the real API then reports it.
        return None if self.limit is None else self.limit - self.usage

    @property
    def is_exhausted(self) -> bool:
        return self.limit is not None and self.usage >= self.limit

    def describe(self) -> JSONObject:
        """The key object of the management API (§2.3)."""
        return {
            "hash": self.hash,
            "name": self.name,
            "label": self.label,
            "disabled": self.disabled,
            "limit": usd(self.limit),
            "limit_remaining": usd(self.limit_remaining),
            "limit_reset": self.limit_reset,
            "include_byok_in_limit": self.include_byok_in_limit,
            **self._usage_windows(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": None,
            "creator_user_id": None,
            "workspace_id": None,
        }

    def describe_current(self) -> JSONObject:
        """The `GET /key` view of the calling key (§2.5)."""
        return {
            "label": self.label,
            "limit": usd(self.limit),
            "limit_remaining": usd(self.limit_remaining),
            "limit_reset": self.limit_reset,
            "include_byok_in_limit": self.include_byok_in_limit,
            **self._usage_windows(),
            "is_free_tier": False,
            "is_management_key": self.is_management,
            "is_provisioning_key": self.is_management,
            "expires_at": None,
            "creator_user_id": None,
            "rate_limit": {"requests": -1, "interval": "10s", "note": "This field is deprecated."},
        }

    def _usage_windows(self) -> JSONObject:
        # The fake keeps one running total, so every window reports it; usage never resets by itself.
        spent = usd(self.usage)
        return {
            "usage": spent,
            "usage_daily": spent,
            "usage_weekly": spent,
            "usage_monthly": spent,
            "byok_usage": 0.0,
            "byok_usage_daily": 0.0,
            "byok_usage_weekly": 0.0,
            "byok_usage_monthly": 0.0,
        }


class KeyRing:
    """Every key the fake knows, plus the rules for who may call which endpoint."""

    def __init__(self, *, management_key: str, accept_unknown_keys: bool, clock: Callable[[], float]) -> None:
        self.accept_unknown_keys = accept_unknown_keys
        self._clock = clock
        self._by_secret: dict[str, FakeKey] = {}
        # A deleted or revoked key must stay dead even when unknown keys are auto-registered.
        self._gone: set[str] = set()
        self.management = self.create(name="Management key", secret=management_key, is_management=True)

    def create(
        self,
        *,
        name: str = "Test key",
        limit: Decimal | None = None,
        limit_reset: str | None = None,
        secret: str | None = None,
        via_oauth: bool = False,
        is_management: bool = False,
    ) -> FakeKey:
        """Issue a key; `secret` defaults to a fresh `sk-or-v1-<64 hex>`."""
        if limit_reset is not None and limit_reset not in LIMIT_RESETS:
            raise ValueError(f"limit_reset must be one of {sorted(LIMIT_RESETS)} or None")
        key = FakeKey(
            secret=secret or f"sk-or-v1-{secrets.token_hex(32)}",
            name=name,
            created_at=iso_time(self._clock()),
            limit=limit,
            limit_reset=limit_reset,
            via_oauth=via_oauth,
            is_management=is_management,
        )
        self._by_secret[key.secret] = key
        self._gone.discard(key.secret)
        return key

    def find(self, secret: str) -> FakeKey | None:
        return self._by_secret.get(secret)

    def revoke(self, secret: str) -> None:
        """Forget a key; calls with it then answer 401 "User not found."."""
        self._by_secret.pop(secret, None)
        self._gone.add(secret)

    def managed(self, *, include_disabled: bool = True) -> list[FakeKey]:
        """The keys the management API lists: the account's own inference keys."""
        return [
            key
            for key in self._by_secret.values()
            if not key.is_management and not key.via_oauth and (include_disabled or not key.disabled)
        ]

    def managed_by_hash(self, key_hash: str) -> FakeKey | None:
        return next((key for key in self.managed() if key.hash == key_hash), None)

    def caller(self, authorization: str | None) -> FakeKey:
        """The key behind an `Authorization: Bearer …` header, management key included."""
        secret = _bearer_secret(authorization)
        if secret is None:
            raise OpenRouterError(401, _NO_CREDENTIALS)
        key = self._by_secret.get(secret)
        if key is None and self.accept_unknown_keys and secret.startswith("sk-or-") and secret not in self._gone:
            key = self.create(name="Auto-registered key", secret=secret)
        if key is None or key.disabled:
            raise OpenRouterError(401, _UNKNOWN_KEY)
        return key

    def inference_caller(self, authorization: str | None) -> FakeKey:
        key = self.caller(authorization)
        if key.is_management:
            # Management keys "cannot call completion endpoints" (§2.1); the exact status is undocumented.
            raise OpenRouterError(403, "Management keys cannot be used for inference; use an API key")
        return key

    def require_management(self, authorization: str | None) -> None:
        secret = _bearer_secret(authorization)
        if secret is None:
            raise OpenRouterError(401, _NO_CREDENTIALS)
        if secret != self.management.secret:
            raise OpenRouterError(401, "Only management keys can perform this operation")


def _bearer_secret(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return None
    return secret
