"""What the consent domain stores, as values: apps, grants, codes and outbox jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..money import Micros

__all__ = ["App", "CodeRecord", "Grant", "GrantState", "Job"]


@dataclass(frozen=True, slots=True)
class App:
    id: str
    name: str
    publishable_key: str
    secret_hash: str = field(repr=False)
    signing_key: bytes = field(repr=False)
    redirect_uris: tuple[str, ...]
    webhook_url: str


class GrantState:
    PENDING = "pending"
    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    app_id: str
    user_id: str
    status: str
    monthly_cap: Micros
    key_hash: str | None
    created_at: int
    updated_at: int
    app_name: str = ""
    grant_requests: int | None = None  # a one-time grant's request count (None: a monthly connection)
    expires_at: int | None = None
    key_limit: Micros | None = None  # the limit last set on the upstream key

    @property
    def one_time(self) -> bool:
        return self.grant_requests is not None


@dataclass(frozen=True, slots=True)
class CodeRecord:
    code_hash: str
    app_id: str
    user_id: str
    redirect_uri: str
    code_challenge: str
    monthly_cap: Micros
    created_at: int
    expires_at: int
    used_at: int | None
    grant_id: str | None
    grant_requests: int | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One outbox row: a webhook to deliver or an upstream key to delete."""

    id: int
    kind: str
    app_id: str
    ordering_key: str
    payload: str
    attempts: int


@dataclass(frozen=True, slots=True)
class NewJob:
    """Outbox work to queue in the same transaction as the change that causes it."""

    kind: str
    app_id: str
    ordering_key: str
    payload: str
    delay_ms: int = 0
