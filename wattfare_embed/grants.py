"""One-time grants: a visitor of an app without accounts approves a few requests under a dollar cap.

The app's browser asks with ``requestGrant({requests, maxUsd})``; consent yields a grant token
(``wfg_…``, opaque, random, bound to this app; the store keeps only its SHA-256), which the app's
server spends with ``wf.grant(token)`` or by sending it in ``X-Wattfare-Grant`` with its secret
key. Each admitted request takes one of the grant's requests and holds money under its dollar cap
in one transaction; it is forwarded, cut off and settled exactly as a connection's request is.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .auth import secret_key_matches
from .errors import AuthError, GrantInvalidError, RateLimitedError, WattfareError
from .metering.refusals import IN_FLIGHT_RETRY_SECONDS
from .money import Micros, usd_number, usd_text
from .store import GrantRecord, GrantRefusal, NewGrant, Reservation, ReservationRequest
from .store._grants import GRANT_ID_PREFIX, new_grant_id

if TYPE_CHECKING:
    from .app import Wattfare
    from .consent import FundingGrant

__all__ = [
    "DEFAULT_GRANT_TTL_SECONDS",
    "GRANT_HEADER",
    "GRANT_TOKEN_PREFIX",
    "MAX_GRANT_REQUESTS",
    "MAX_GRANT_TTL_SECONDS",
    "GrantAdmission",
    "GrantStatus",
    "IssuedGrant",
    "grant_token_hash",
    "is_grant_id",
    "issue_grant",
]

GRANT_HEADER = "x-wattfare-grant"
GRANT_TOKEN_PREFIX = "wfg_"
DEFAULT_GRANT_TTL_SECONDS = 24 * 3600
MAX_GRANT_TTL_SECONDS = 30 * 24 * 3600
MAX_GRANT_REQUESTS = 1000
# `wfg_` and 43 url-safe characters (32 random bytes): never a JWT (no dots), never a key.
_TOKEN = re.compile(r"wfg_[A-Za-z0-9_-]{43}")

_MESSAGES = {
    GrantRefusal.UNKNOWN: "this grant token is unknown to this app",
    GrantRefusal.EXPIRED: "this grant has expired; ask the visitor to approve a new one",
    GrantRefusal.USED_UP: "this grant's requests are used up; ask the visitor to approve a new one",
    GrantRefusal.OVER_CAP: "this grant's dollar cap is reached; ask the visitor to approve a new one",
    GrantRefusal.REVOKED: "the visitor revoked this grant",
}


def is_grant_id(connection_id: str) -> bool:
    return connection_id.startswith(GRANT_ID_PREFIX)


def grant_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def credential_owner(app_id: str, grant_id: str) -> str:
    """What a grant's sealed credential is bound to (the ``app_id/app_user_id`` of its ledger view)."""
    return f"{app_id}/{grant_id}"


@dataclass(frozen=True, slots=True)
class GrantStatus:
    """What is left of a grant. ``active`` is False once it is unknown, expired, used up, over its
    cap or revoked (``reason`` says which)."""

    active: bool
    reason: str | None
    requests: int
    requests_used: int
    max_cost: Micros
    spent: Micros
    held: Micros
    expires_at: int

    @property
    def requests_left(self) -> int:
        return max(0, self.requests - self.requests_used)

    @property
    def remaining(self) -> Micros:
        return max(0, self.max_cost - self.spent)

    @classmethod
    def of(cls, record: GrantRecord | None, now: int) -> GrantStatus:
        if record is None:
            return cls(False, GrantRefusal.UNKNOWN.value, 0, 0, 0, 0, 0, 0)
        reason: GrantRefusal | None = None
        if record.revoked:
            reason = GrantRefusal.REVOKED
        elif record.expires_at <= now:
            reason = GrantRefusal.EXPIRED
        elif record.requests_used >= record.requests_allowed:
            reason = GrantRefusal.USED_UP
        elif record.spent >= record.max_cost:
            reason = GrantRefusal.OVER_CAP
        return cls(
            active=reason is None,
            reason=reason.value if reason else None,
            requests=record.requests_allowed,
            requests_used=record.requests_used,
            max_cost=record.max_cost,
            spent=record.spent,
            held=record.reserved,
            expires_at=record.expires_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "reason": self.reason,
            "requests": self.requests,
            "requestsUsed": self.requests_used,
            "requestsLeft": self.requests_left,
            "maxUsd": usd_number(self.max_cost),
            "spentUsd": usd_number(self.spent),
            "remainingUsd": usd_number(self.remaining),
            "expiresAt": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class IssuedGrant:
    """A grant just made: the token (shown once, to the browser that asked) and its terms."""

    token: str
    grant_id: str
    requests: int
    max_cost: Micros
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "grantToken": self.token,
            "expiresAt": self.expires_at,
            "requests": self.requests,
            "maxUsd": usd_number(self.max_cost),
        }


async def issue_grant(
    embed: Wattfare, funding: FundingGrant, requests: int, requested_cap: Micros, now: int
) -> IssuedGrant:
    """Store a grant consent produced and mint its token. The authority's figures win where it
    names them (it may approve fewer requests or a lower cap), never above what was asked."""
    requests = min(requests, funding.grant_requests or requests)
    cap = min(requested_cap, funding.monthly_cap or requested_cap)
    if funding.hard_limit is not None:
        cap = min(cap, funding.hard_limit)
    expires_at = now + embed.settings.grant_ttl_seconds
    if funding.expires_at is not None:
        expires_at = min(expires_at, funding.expires_at)
    token = GRANT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    grant_id = new_grant_id()
    await embed.store.create_grant(
        NewGrant(
            id=grant_id,
            app_id=embed.keys.app_id,
            token_hash=grant_token_hash(token),
            authority=embed.consent.name,
            requests_allowed=requests,
            max_cost=cap,
            sealed_credential=embed.credentials.seal(funding.credential, credential_owner(embed.keys.app_id, grant_id)),
            expires_at=expires_at,
            authority_grant_id=funding.grant_id,
            upstream_url=funding.upstream_url,
        ),
        now,
    )
    return IssuedGrant(token, grant_id, requests, cap, expires_at)


def refusal_error(refusal: GrantRefusal, minimum: Micros) -> WattfareError:
    if refusal is GrantRefusal.CONTENDED:
        return RateLimitedError("too many requests on this grant at once; try again", headers={"Retry-After": "1"})
    if refusal is GrantRefusal.HELD_IN_FLIGHT:
        return RateLimitedError(
            f"requests in flight hold the rest of this grant's dollar cap; this request needs at least "
            f"${usd_text(minimum)}: try again when they finish",
            headers={"Retry-After": str(IN_FLIGHT_RETRY_SECONDS)},
        )
    message = _MESSAGES[refusal]
    if refusal is GrantRefusal.OVER_CAP and minimum > 0:
        message += f" (this request needs at least ${usd_text(minimum)})"
    return GrantInvalidError(message)


class GrantAdmission:
    """The proxy's admission for requests that carry ``X-Wattfare-Grant``: same ``Reservation``
    out, same settle in (the store finishes a grant's ledger rows by their id)."""

    def __init__(self, embed: Wattfare) -> None:
        self._embed = embed

    def token_of(self, headers: Mapping[str, str], api_key_header: str | None = None) -> str | None:
        """The grant token of a request that carries one (checking the app's secret key with it),
        or ``None`` for a request without the header, which is a connection's."""
        token = headers.get(GRANT_HEADER)
        if token is None:
            return None
        authorization = headers.get("authorization", "")
        if not authorization and api_key_header and headers.get(api_key_header):
            authorization = "Bearer " + headers[api_key_header]
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key.startswith("sk_"):
            # The token alone spends nothing: the app's server sends it with its secret key.
            raise AuthError("send the grant token in X-Wattfare-Grant with `Authorization: Bearer sk_…`")
        if not secret_key_matches(key, self._embed.keys):
            raise AuthError("the secret key is not this app's")
        token = token.strip(" \t")
        if not _TOKEN.fullmatch(token):
            raise GrantInvalidError("X-Wattfare-Grant does not hold a grant token (wfg_…)")
        return token

    async def reserve(self, token: str, model: str, kind: str, wanted: Micros, minimum: Micros) -> Reservation:
        now = int(time.time())
        request = ReservationRequest(
            app_id=self._embed.keys.app_id,
            app_user_id="",
            wanted=wanted,
            minimum=minimum,
            kind=kind,
            model=model,
            ttl_seconds=self._embed.settings.reservation_ttl_seconds,
        )
        token_hash = grant_token_hash(token)
        try:
            result = await self._embed.store.reserve_grant(self._embed.keys.app_id, token_hash, request, now)
            if result is GrantRefusal.HELD_IN_FLIGHT and await self._embed.proxy.unsettled.caught_up():
                # As for a connection's request (``Proxy._reserve``): the holds in the way may be of
                # answers this process has sent, whose settles are being written; once written, they
                # are their (smaller) charges. The grant's id is not known before its row is read,
                # so this waits for the settles this process owes right now, all of them.
                result = await self._embed.store.reserve_grant(self._embed.keys.app_id, token_hash, request, now)
        except Exception:
            raise RateLimitedError(
                "the budget store could not take this request; try again shortly", headers={"Retry-After": "1"}
            ) from None
        if isinstance(result, GrantRefusal):
            raise refusal_error(result, minimum)
        reservation, _grant = result
        return reservation

    async def still_active(self, grant_id: str) -> bool:
        record = await self._embed.store.get_grant(grant_id)
        return record is not None and not record.revoked
