"""The consent round trip: one-time state, PKCE, browser binding, and the callback.

``begin`` stores a consent request and returns the authority's authorize URL;
``finish`` consumes the state (once, from the same browser, before it expires),
exchanges the code and saves the connection.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._redaction import redact
from .consent import AuthorizeRequest, FundingGrant
from .errors import GrantInvalidError, InvalidRequestError, UpstreamError, WattfareError
from .grants import IssuedGrant, issue_grant
from .money import Micros
from .pkce import new_verifier, s256_challenge
from .status import ConnectionStatus
from .store import ConsentRequest, NewConnection

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = [
    "BROWSER_COOKIE",
    "SECURE_BROWSER_COOKIE",
    "ConsentOutcome",
    "begin",
    "browser_cookie_name",
    "browser_hash",
    "finish",
    "plausible_state",
]

BROWSER_COOKIE = "wattfare_browser"
# Over https: a `__Host-` cookie is only ever set by this exact origin, never by a sibling subdomain.
SECURE_BROWSER_COOKIE = "__Host-wattfare_browser"
_STATE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def browser_cookie_name(*, secure: bool) -> str:
    return SECURE_BROWSER_COOKIE if secure else BROWSER_COOKIE


def plausible_state(state: object) -> bool:
    """Whether ``state`` could be one of ours (url-safe, 16 to 64 characters): anything else is
    unknown without asking the database, which may not even take it (a NUL, on PostgreSQL)."""
    return isinstance(state, str) and _STATE.fullmatch(state) is not None


def browser_hash(app_id: str, browser_id: str) -> str:
    # The app id is hashed in so a state can only ever be consumed by the app that issued it,
    # even when several apps share one database.
    return hashlib.sha256(f"{app_id}\x00{browser_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsentOutcome:
    """How a callback ended, for the page that reports it."""

    status: ConnectionStatus
    return_to: str
    mode: str
    error: WattfareError | None = None
    denied: bool = False
    # A one-time grant's round trip: what was asked for, and the grant when it was approved.
    grant_requests: int | None = None
    grant: IssuedGrant | None = None


async def begin(
    embed: Wattfare,
    *,
    app_user_id: str,
    monthly_cap: Micros,
    return_to: str,
    mode: str,
    browser_id: str,
    mount_url: str,
    grant_requests: int | None = None,
) -> str:
    """Record a consent request and return the one-time authorize URL. With ``grant_requests``
    the visitor is asked for a one-time grant of that many requests capped at ``monthly_cap``."""
    now = int(time.time())
    state = secrets.token_urlsafe(24)
    verifier = new_verifier()
    redirect_uri = f"{mount_url}/callback"
    await embed.store.create_consent_request(
        ConsentRequest(
            state=state,
            app_id=embed.keys.app_id,
            app_user_id=app_user_id,
            authority=embed.consent.name,
            verifier=verifier,
            requested_cap=monthly_cap,
            return_to=return_to,
            mode=mode,
            redirect_uri=redirect_uri,
            browser_hash=browser_hash(embed.keys.app_id, browser_id),
            created_at=now,
            expires_at=now + embed.settings.consent_ttl_seconds,
            grant_requests=grant_requests,
        ),
        keep_open=embed.settings.max_open_consents_per_user,
    )
    request = AuthorizeRequest(
        state=state,
        code_challenge=s256_challenge(verifier),
        redirect_uri=redirect_uri,
        monthly_cap=monthly_cap,
        app_user_id=app_user_id,
        mount_url=mount_url,
        grant_requests=grant_requests,
    )
    return embed.consent.authorize_url(request, embed.authority_context())


async def _why_unusable(embed: Wattfare, state: str, now: int) -> ConsentOutcome:
    known = await embed.store.find_consent_request(state)
    nobody = ConnectionStatus.of("", None, now)
    if known is None or known.app_id != embed.keys.app_id:
        unknown = GrantInvalidError("this consent link is unknown; start connecting again")
        return ConsentOutcome(nobody, "/", "popup", unknown)
    if known.used_at is not None:
        error = GrantInvalidError("this consent link was already used; start connecting again")
    elif known.expires_at <= now:
        error = GrantInvalidError("this consent link has expired; start connecting again")
    else:
        error = GrantInvalidError(
            "this consent link was started in another browser; start connecting again from the app"
        )
    # A grant's link answers as a grant's round trip, so the page waiting for one hears the error.
    return ConsentOutcome(nobody, "/", "popup", error, grant_requests=known.grant_requests)


async def finish(
    embed: Wattfare,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    browser_id: str | None,
) -> ConsentOutcome:
    """Complete a callback. Never raises: every ending is an outcome the page can show."""
    now = int(time.time())
    if not state:
        # OpenRouter drops `state` when the user denies, so a stateless error is a denial.
        problem = None if error else InvalidRequestError("the callback is missing its state")
        return ConsentOutcome(ConnectionStatus.of("", None, now), "/", "popup", problem, denied=bool(error))
    if not plausible_state(state):
        unknown = GrantInvalidError("this consent link is unknown; start connecting again")
        return ConsentOutcome(ConnectionStatus.of("", None, now), "/", "popup", unknown)
    request = await embed.store.consume_consent_request(state, browser_hash(embed.keys.app_id, browser_id or ""), now)
    if request is None:
        return await _why_unusable(embed, state, now)
    if request.grant_requests is not None:
        return await _finish_grant(embed, request, code, error, now)
    if error or not code:
        status = await embed.status(request.app_user_id)
        return ConsentOutcome(status, request.return_to, request.mode, denied=True)
    try:
        grant = await embed.consent.exchange(code, request.verifier, request.redirect_uri, embed.authority_context())
    except WattfareError as exc:
        status = await embed.status(request.app_user_id)
        # Shown on the callback page: whatever the authority put in it, no credential goes with it.
        shown = type(exc)(redact(exc.message), headers=exc.headers)
        return ConsentOutcome(status, request.return_to, request.mode, shown)
    if grant.grant_requests is not None:
        # A one-time grant is never stored as a connection (docs/consent-protocol.md, §4.1).
        status = await embed.status(request.app_user_id)
        wrong = UpstreamError("the consent authority answered a one-time grant where a connection was asked")
        return ConsentOutcome(status, request.return_to, request.mode, wrong)
    await save_grant(embed, request.app_user_id, grant, request.requested_cap, now)
    status = await embed.status(request.app_user_id)
    return ConsentOutcome(status, request.return_to, request.mode)


async def _finish_grant(
    embed: Wattfare, request: ConsentRequest, code: str | None, error: str | None, now: int
) -> ConsentOutcome:
    """A one-time grant's callback: nobody's connection changes; the grant is made and its token
    goes back to the browser that asked."""
    nobody = ConnectionStatus.of("", None, now)
    asked = request.grant_requests
    if error or not code:
        return ConsentOutcome(nobody, request.return_to, request.mode, denied=True, grant_requests=asked)
    try:
        funding = await embed.consent.exchange(code, request.verifier, request.redirect_uri, embed.authority_context())
    except WattfareError as exc:
        shown = type(exc)(redact(exc.message), headers=exc.headers)
        return ConsentOutcome(nobody, request.return_to, request.mode, shown, grant_requests=asked)
    issued = await issue_grant(embed, funding, asked or 1, request.requested_cap, now)
    return ConsentOutcome(nobody, request.return_to, request.mode, grant_requests=asked, grant=issued)


async def save_grant(embed: Wattfare, app_user_id: str, grant: FundingGrant, requested: Micros, now: int) -> None:
    """Store a new grant as the user's connection, replacing (and revoking) an older one."""
    previous = await embed.store.get_connection(embed.keys.app_id, app_user_id, now)
    cap = min(grant.monthly_cap or requested, embed.settings.max_monthly_cap)
    if grant.hard_limit is not None:
        cap = min(cap, grant.hard_limit)
    bound_to = f"{embed.keys.app_id}/{app_user_id}"
    await embed.store.save_connection(
        NewConnection(
            app_id=embed.keys.app_id,
            app_user_id=app_user_id,
            authority=embed.consent.name,
            monthly_cap=cap,
            sealed_credential=embed.credentials.seal(grant.credential, bound_to),
            grant_id=grant.grant_id,
            upstream_url=grant.upstream_url,
            hard_limit=grant.hard_limit,
        ),
        now,
    )
    if previous is not None and previous.grant_id and previous.grant_id != grant.grant_id:
        old_credential = embed.open_credential(previous)
        await embed.revoke_with_authority(old_credential, previous.grant_id)
