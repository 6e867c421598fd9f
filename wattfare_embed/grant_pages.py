"""The browser's side of a one-time grant: what it may ask for, the development consent page for
it, and the callback's answer (a message to the opener, or a redirect carrying the grant)."""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ._http import parse_monthly_usd
from ._origin import public_origin
from .consent._protocol import wire_usd
from .consent_flow import ConsentOutcome, browser_hash
from .errors import InvalidRequestError
from .grants import MAX_GRANT_REQUESTS
from .money import Micros
from .store import ConsentRequest

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["GrantAsk", "grant_callback", "grant_consent_owner", "read_grant_ask", "render_dev_grant_page"]

GRANT_MESSAGE = "wattfare:grant"


@dataclass(frozen=True, slots=True)
class GrantAsk:
    requests: int
    max_cost: Micros
    mode: str


def read_grant_ask(embed: Wattfare, body: dict[str, Any]) -> GrantAsk:
    """``{publishableKey, requests, maxUsd?, mode?}`` from the browser, checked."""
    if body.get("publishableKey") != embed.keys.publishable_key:
        raise InvalidRequestError("publishableKey is missing or not this app's")
    requests = body.get("requests")
    if isinstance(requests, bool) or not isinstance(requests, int) or not 1 <= requests <= MAX_GRANT_REQUESTS:
        raise InvalidRequestError(f"requests must be a whole number from 1 to {MAX_GRANT_REQUESTS}")
    settings = embed.settings
    wanted = body.get("maxUsd")
    if wanted is None:
        max_cost = settings.default_grant_cap
    else:
        max_cost = parse_monthly_usd(wanted, maximum=settings.max_grant_cap, field="maxUsd")
    mode = body.get("mode", "popup")
    if mode not in ("popup", "redirect"):
        raise InvalidRequestError('mode must be "popup" or "redirect"')
    return GrantAsk(requests, max_cost, mode)


def grant_consent_owner(app_id: str, browser_id: str) -> str:
    """Whom a grant's consent request is filed under: the browser that asked (there is no user),
    so one visitor's open requests are bounded without crowding out another's."""
    return "grant:" + browser_hash(app_id, browser_id)[:32]


def _expiry_text(embed: Wattfare) -> str:
    seconds = embed.settings.grant_ttl_seconds
    until = datetime.fromtimestamp(int(time.time()) + seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
    span = f"{seconds // 86400} days" if seconds % 86400 == 0 and seconds > 86400 else None
    if span is None:
        span = f"{seconds // 3600} hours" if seconds >= 3600 else f"{seconds // 60} minutes"
    return f"in {span} ({until})"


def render_dev_grant_page(embed: Wattfare, request: Request, pending: ConsentRequest, template: Any) -> str:
    settings = embed.settings
    requests = pending.grant_requests or 0
    return str(
        template.substitute(
            app_name=html.escape(settings.app_name),
            app_initial=html.escape(settings.app_name[:1].upper() or "A"),
            action=html.escape(f"{request.scope.get('root_path', '')}/dev/consent"),
            state=html.escape(pending.state),
            requests=str(requests),
            plural="" if requests == 1 else "s",
            cap_usd=html.escape(wire_usd(pending.requested_cap)),
            expiry=html.escape(_expiry_text(embed)),
            funding="your development OpenRouter key" if settings.upstream_api_key else "the simulated upstream",
        )
    )


def _redirect_target(return_to: str, result: str, grant: dict[str, Any] | None) -> str:
    """``return_to`` with ``wattfare=<result>`` in its query and, for a grant, its terms in the
    #fragment: never sent to a server, and taken out of the address by the browser client."""
    path, _, fragment = return_to.partition("#")
    separator = "&" if "?" in path else "?"
    target = f"{path}{separator}wattfare={result}"
    if grant is None:
        return target + (f"#{fragment}" if fragment else "")
    terms = {
        "wattfare_grant": grant["grantToken"],
        "expires_at": grant["expiresAt"],
        "requests": grant["requests"],
        "max_usd": grant["maxUsd"],
    }
    return f"{target}#{urlencode(terms)}"


def grant_callback(
    embed: Wattfare, request: Request, outcome: ConsentOutcome, template: Any, headers: dict[str, str]
) -> Response:
    """The end of a grant's round trip: the grant (or the denial) to the opener, or back to the app."""
    grant = outcome.grant.to_json() if outcome.grant is not None else None
    result = "error" if outcome.error is not None else "granted" if grant else "denied"
    back = _redirect_target(outcome.return_to, result, grant)
    redirecting = outcome.mode == "redirect" and outcome.error is None
    if redirecting and grant is None:
        return RedirectResponse(back, status_code=303, headers={"cache-control": "no-store"})
    # A granted redirect goes back from the page's script, not a Location header: the token stays
    # in a body (which no access log or client trace records) and in the app's #fragment.
    if outcome.error is not None:
        title, message, status_code = "Not approved", outcome.error.message, 400
    elif grant is None:
        title, message, status_code = "Not approved", "You did not approve any requests. Nothing was charged.", 200
    else:
        count = grant["requests"]
        title, status_code = "Approved", 200
        message = (
            f"You approved {count} AI request{'' if count == 1 else 's'} "
            f"(up to ${wire_usd(outcome.grant.max_cost if outcome.grant else 0)}) for {embed.settings.app_name}."
        )
    payload = {
        "type": GRANT_MESSAGE,
        "origin": public_origin(embed.settings, request),
        # In a popup the token only ever travels in the message to the opener.
        "returnTo": back if redirecting else back.partition("#")[0],
        "navigate": redirecting or (outcome.error is None and grant is None),
        "status": None,
        "grant": grant,
        "error": outcome.error.to_json()["error"] if outcome.error else None,
    }
    page = template.substitute(
        title=html.escape(title),
        message=html.escape(message),
        return_to=html.escape(back.partition("#")[0]),
        app_name=html.escape(embed.settings.app_name),
        result_json=json.dumps(payload).replace("<", "\\u003c"),
    )
    return Response(page, status_code=status_code, media_type="text/html", headers=headers)
