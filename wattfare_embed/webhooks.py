"""``POST {mount}/webhooks``: signed grant changes from a consent domain.

The domain tells the app when a user revokes a grant or changes its cap on the
domain's dashboard (docs/consent-protocol.md, §6). Every event is checked before
anything is applied: the signature (in constant time), the timestamp (5 minutes
either way), the body's shape, and that its id was never applied before. Anything
wrong answers a typed 400 and changes nothing. The upstream refusing a revoked key
stays the backstop when a webhook never arrives.

Anyone can post here, so the work done before the signature is checked is bounded: the
body is read within ``body_timeout_seconds`` and at most 64 KiB, and at most
``max_concurrent_webhooks`` requests are read and checked at once (the next one answers
429 at once, and the domain retries).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._gate import ConcurrencyGate
from ._http import json_response, read_body
from ._json import parse_json
from .consent._protocol import (
    GRANT_REVOKED,
    GRANT_UPDATED,
    SIGNATURE_HEADER,
    WebhookSignatureError,
    parse_wire_usd,
    verify_webhook,
    webhook_signing_key,
)
from .consent.hosted import HostedConsent
from .errors import InvalidRequestError
from .money import Micros
from .store import GrantChange

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["GRANT_REVOKED", "GRANT_UPDATED", "GrantEvent", "parse_event", "webhook_routes"]

logger = logging.getLogger("wattfare_embed")

MAX_WEBHOOK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class GrantEvent:
    """One webhook event, checked: what happened to which grant."""

    id: str
    type: str
    grant_id: str
    monthly_cap: Micros | None = None
    hard_limit: Micros | None = None  # the upstream key's own limit, when the event names it


def parse_event(body: bytes) -> GrantEvent:
    """The event in a webhook body, or ``InvalidRequestError`` saying what is malformed."""
    payload: Any = parse_json(body, "the webhook body")
    if not isinstance(payload, dict):
        raise InvalidRequestError("the webhook body must be a JSON object")
    event_id, kind, created, data = payload.get("id"), payload.get("type"), payload.get("created"), payload.get("data")
    if not _printable(event_id):
        raise InvalidRequestError("the webhook event needs an id of at most 128 printable characters")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequestError("the webhook event needs a type")
    if isinstance(created, bool) or not isinstance(created, int):
        raise InvalidRequestError("the webhook event needs `created` in unix seconds")
    if not isinstance(data, dict):
        raise InvalidRequestError("the webhook event needs a `data` object")
    grant_id = data.get("grant_id")
    if not _printable(grant_id):
        raise InvalidRequestError("the webhook event needs data.grant_id (at most 128 printable characters)")
    cap = hard_limit = None
    if kind == GRANT_UPDATED:
        try:
            cap = parse_wire_usd(data.get("monthly_usd"))
            hard = data.get("hard_limit_usd")
            hard_limit = parse_wire_usd(hard) if hard is not None else None
        except ValueError as exc:
            raise InvalidRequestError(f"grant.updated needs data.monthly_usd as a decimal string: {exc}") from exc
    return GrantEvent(id=event_id, type=kind, grant_id=grant_id, monthly_cap=cap, hard_limit=hard_limit)


def _printable(value: object) -> TypeGuard[str]:
    # Checked before the database sees it: PostgreSQL refuses a NUL in text outright.
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()


def webhook_routes(embed: Wattfare) -> list[Route]:
    """The route a consent domain delivers to; the embed mounts it at ``{mount}/webhooks``."""
    signing_key = webhook_signing_key(embed.keys.secret_key)
    settings = embed.settings
    gate = ConcurrencyGate(settings.max_concurrent_webhooks, "webhook deliveries")
    if isinstance(embed.consent, HostedConsent):
        consent, context = embed.consent, embed.authority_context
        # authorize_url is synchronous, so the discovery document is fetched at start-up.
        embed.on_startup(lambda: consent.warm_up(context()))

    async def receive_webhook(request: Request) -> Response:
        with gate.admit():
            body = await read_body(request, MAX_WEBHOOK_BYTES, timeout=settings.body_timeout_seconds)
            now = int(time.time())
            try:
                verify_webhook(signing_key, request.headers.get(SIGNATURE_HEADER), body, now)
            except WebhookSignatureError as exc:
                raise InvalidRequestError(str(exc)) from exc
        event = parse_event(body)
        return json_response({"received": True, "applied": await _apply(embed, event, now)})

    return [Route("/webhooks", receive_webhook, methods=["POST"])]


async def _apply(embed: Wattfare, event: GrantEvent, now: int) -> bool:
    """Apply the event and record its id in one transaction (docs/consent-protocol.md, §6): a
    failure leaves neither, so the domain's retry applies it then, and no revoke is ever lost;
    a second delivery, even a concurrent one, is refused as a replay."""
    known = event.type in (GRANT_REVOKED, GRANT_UPDATED)  # a newer protocol's event: recorded, ignored
    change = GrantChange(
        app_id=embed.keys.app_id,
        event_id=event.id,
        grant_id=event.grant_id,
        revoke=known and event.type == GRANT_REVOKED,
        monthly_cap=event.monthly_cap if known else None,
        hard_limit=event.hard_limit if known else None,
        max_cap=embed.settings.max_monthly_cap,
    )
    result = await embed.store.apply_grant_change(change, now)
    if result.duplicate:
        raise InvalidRequestError(f"the webhook event {event.id} was already received")
    if result.applied and change.revoke and result.connection_id is not None:
        embed.connection_ended(result.connection_id)  # open streams stop at their next chunk
        logger.info("grant %s was revoked at the consent domain", event.grant_id)
    return result.applied
