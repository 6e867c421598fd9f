"""``POST {mount}/webhooks``: signed grant changes from a consent domain.

The domain tells the app when a user revokes a grant or changes its cap on the
domain's dashboard (docs/consent-protocol.md, §6). Every event is checked before
anything is applied: the signature (in constant time), the timestamp (5 minutes
either way), the body's shape, and that its id was never applied before. Anything
wrong answers a typed 400 and changes nothing. The upstream refusing a revoked key
stays the backstop when a webhook never arrives.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._http import json_response
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
from .store import ConnectionState

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


def parse_event(body: bytes) -> GrantEvent:
    """The event in a webhook body, or ``InvalidRequestError`` saying what is malformed."""
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError("the webhook body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidRequestError("the webhook body must be a JSON object")
    event_id, kind, created, data = payload.get("id"), payload.get("type"), payload.get("created"), payload.get("data")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
        raise InvalidRequestError("the webhook event needs an id of at most 128 characters")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequestError("the webhook event needs a type")
    if isinstance(created, bool) or not isinstance(created, int):
        raise InvalidRequestError("the webhook event needs `created` in unix seconds")
    if not isinstance(data, dict):
        raise InvalidRequestError("the webhook event needs a `data` object")
    grant_id = data.get("grant_id")
    if not isinstance(grant_id, str) or not 0 < len(grant_id) <= 128:
        raise InvalidRequestError("the webhook event needs data.grant_id")
    cap = None
    if kind == GRANT_UPDATED:
        try:
            cap = parse_wire_usd(data.get("monthly_usd"))
            hard = data.get("hard_limit_usd")
            # The cap can never be above the upstream key's own limit: it would only end in 403s.
            cap = min(cap, parse_wire_usd(hard)) if hard is not None else cap
        except ValueError as exc:
            raise InvalidRequestError(f"grant.updated needs data.monthly_usd as a decimal string: {exc}") from exc
    return GrantEvent(id=event_id, type=kind, grant_id=grant_id, monthly_cap=cap)


def webhook_routes(embed: Wattfare) -> list[Route]:
    """The route a consent domain delivers to; the embed mounts it at ``{mount}/webhooks``."""
    signing_key = webhook_signing_key(embed.keys.secret_key)
    if isinstance(embed.consent, HostedConsent):
        consent, context = embed.consent, embed.authority_context
        # authorize_url is synchronous, so the discovery document is fetched at start-up.
        embed.on_startup(lambda: consent.warm_up(context()))

    async def receive_webhook(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_WEBHOOK_BYTES:
                raise InvalidRequestError(f"a webhook body may be at most {MAX_WEBHOOK_BYTES} bytes")
        now = int(time.time())
        try:
            verify_webhook(signing_key, request.headers.get(SIGNATURE_HEADER), bytes(body), now)
        except WebhookSignatureError as exc:
            raise InvalidRequestError(str(exc)) from exc
        event = parse_event(bytes(body))
        if await embed.store.has_event(event.id):
            raise InvalidRequestError(f"the webhook event {event.id} was already received")
        applied = await _apply(embed, event, now)
        # Recorded once applied, never before: a failure or a crash in between leaves the domain's
        # retry free to apply it, and applying twice is harmless (a revoke or a cap set again
        # changes nothing more), where a remembered-but-unapplied revoke would be lost.
        await embed.store.remember_event(event.id, now)
        return json_response({"received": True, "applied": applied})

    return [Route("/webhooks", receive_webhook, methods=["POST"])]


async def _apply(embed: Wattfare, event: GrantEvent, now: int) -> bool:
    if event.type not in (GRANT_REVOKED, GRANT_UPDATED):
        return False  # a newer protocol's event: acknowledged, nothing to do here
    record = await embed.store.find_connection_by_grant(event.grant_id, now)
    # A grant this app no longer holds (replaced, or another app's in a shared database): nothing to do.
    if record is None or record.app_id != embed.keys.app_id or record.status is not ConnectionState.ACTIVE:
        return False
    if event.type == GRANT_REVOKED:
        await embed.store.set_status(
            record.app_id, record.app_user_id, ConnectionState.REVOKED, now, drop_credential=True
        )
        embed.connection_ended(record.id)
        logger.info("grant %s was revoked at the consent domain", event.grant_id)
        return True
    assert event.monthly_cap is not None
    cap = min(event.monthly_cap, embed.settings.max_monthly_cap)
    return await embed.store.set_cap(record.app_id, record.app_user_id, cap, now) is not None
