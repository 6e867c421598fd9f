"""One interface for every consent authority (development page, OpenRouter, hosted domain).

An authority builds the authorize URL, exchanges the returned code for a
``FundingGrant`` and revokes a grant. The embed keeps state, PKCE verifier,
browser binding and the return path; the authority only speaks its protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from ..keys import AppKeys
from ..money import Micros

__all__ = ["AuthorityContext", "AuthorizeRequest", "ConsentAuthority", "FundingGrant"]


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    state: str
    code_challenge: str
    redirect_uri: str
    monthly_cap: Micros
    app_user_id: str
    # The embed's own public base URL (origin + mount path), for authorities it serves itself.
    mount_url: str
    # Set for a one-time grant of this many requests; ``monthly_cap`` is then the grant's dollar cap.
    grant_requests: int | None = None


@dataclass(frozen=True, slots=True)
class FundingGrant:
    """What consent yields: a credential to spend with, and what the authority approved."""

    credential: str = field(repr=False)
    grant_id: str | None = None
    monthly_cap: Micros | None = None  # None: the authority does not report one; the request stands
    hard_limit: Micros | None = None
    upstream_url: str | None = None
    # A one-time grant's terms, when the authority approved one (else None: it is a connection).
    grant_requests: int | None = None
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class AuthorityContext:
    """What an authority may use from the embed."""

    keys: AppKeys
    app_name: str
    http: aiohttp.ClientSession
    upstream_url: str
    upstream_api_key: str | None


class ConsentAuthority(Protocol):
    """A place on its own domain where a user approves a monthly cap."""

    name: str

    def check(self, keys: AppKeys) -> None:
        """Raise ``ConfigurationError`` when this authority cannot serve these keys."""

    def authorize_url(self, request: AuthorizeRequest, context: AuthorityContext) -> str: ...

    async def exchange(self, code: str, verifier: str, redirect_uri: str, context: AuthorityContext) -> FundingGrant:
        """Trade a code for a grant; raise ``GrantInvalidError`` for a bad or used code."""

    async def revoke(self, credential: str | None, grant_id: str | None, context: AuthorityContext) -> None:
        """Ask the authority to end a grant; best effort, never raises for an unknown grant."""
