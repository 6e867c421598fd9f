"""``POST {mount}/webhooks``: only a fresh, correctly signed, never-seen, well-formed event is applied."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx2
import pytest

from wattfare_embed import new_key_pair
from wattfare_embed.consent._protocol import sign_webhook, webhook_signing_key
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import ConnectionRecord

from .conftest import Stack


def event(grant_id: str, kind: str = "grant.updated", **data: Any) -> dict[str, Any]:
    if kind == "grant.updated":
        data.setdefault("monthly_usd", "4.00")
    return {
        "id": "evt_" + secrets.token_hex(8),
        "type": kind,
        "created": int(time.time()),
        "data": {"grant_id": grant_id, **data},
    }


async def deliver(
    stack: Stack,
    body: bytes | dict[str, Any],
    *,
    key: bytes | None = None,
    at: int | None = None,
    header: str | None = None,
) -> httpx2.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = (
        header
        if header is not None
        else sign_webhook(key or webhook_signing_key(stack.keys.secret_key), at or int(time.time()), raw)
    )
    async with httpx2.AsyncClient() as http:
        return await http.post(
            stack.mount_url + "/webhooks",
            content=raw,
            headers={"content-type": "application/json", "wattfare-signature": signature},
        )


def assert_refused(response: httpx2.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def fail_once(store: object, method: str, error: Exception) -> None:
    """Make ``store.<method>`` raise ``error`` on its next call only."""
    real = getattr(store, method)

    async def failing(*args: Any, **kwargs: Any) -> Any:
        setattr(store, method, real)
        raise error

    setattr(store, method, failing)


async def connected(stack: Stack, user: str) -> ConnectionRecord:
    return await stack.connect(user, monthly_usd="10")


async def test_a_signed_event_is_applied_once(stack: Stack) -> None:
    record = await connected(stack, "ada")
    update = event(str(record.grant_id), monthly_usd="4.00")
    applied = await deliver(stack, update)
    assert applied.status_code == 200 and applied.json() == {"received": True, "applied": True}
    assert (await stack.connection("ada")).monthly_cap == micros_from_usd("4")

    later = event(str(record.grant_id), monthly_usd="6.00")
    assert (await deliver(stack, later)).status_code == 200
    replayed = await deliver(stack, update)  # a fresh signature on an old event id
    assert_refused(replayed)
    assert "already received" in replayed.json()["error"]["message"]
    assert (await stack.connection("ada")).monthly_cap == micros_from_usd("6"), "the replay changed nothing"


async def test_an_event_that_failed_to_apply_is_applied_when_the_domain_retries(stack: Stack) -> None:
    record = await connected(stack, "cy")
    revoke = event(str(record.grant_id), "grant.revoked")
    fail_once(stack.embed.store, "apply_grant_change", OSError("database is locked"))
    failed = await deliver(stack, revoke)
    # The typed 503 (the store is unavailable): the domain keeps it in its outbox and tries again.
    assert (failed.status_code, failed.json()["error"]["code"]) == (503, "unavailable")
    assert (await stack.connection("cy")).status.value == "active"

    retried = await deliver(stack, revoke)  # nothing was recorded: not refused as a replay
    assert retried.status_code == 200 and retried.json()["applied"] is True
    assert (await stack.connection("cy")).status.value == "revoked"
    assert_refused(await deliver(stack, revoke))  # now it is recorded


async def test_forged_and_stale_events_change_nothing(stack: Stack) -> None:
    record = await connected(stack, "bea")
    revoke = event(str(record.grant_id), "grant.revoked")
    other_app = webhook_signing_key(new_key_pair(live=True).secret_key)
    now = int(time.time())
    assert_refused(await deliver(stack, revoke, key=other_app))  # signed by someone else
    assert_refused(await deliver(stack, revoke, key=stack.keys.secret_key.encode()))  # the raw secret is not the key
    assert_refused(await deliver(stack, revoke, at=now - 400))  # stale
    assert_refused(await deliver(stack, revoke, at=now + 400))  # from the future
    assert_refused(await deliver(stack, revoke, header=""))  # unsigned
    assert_refused(await deliver(stack, revoke, header="t=abc,v1=00"))
    good = sign_webhook(webhook_signing_key(stack.keys.secret_key), now, json.dumps(revoke).encode())
    tampered = event(str(record.grant_id), "grant.updated", monthly_usd="999.00")
    assert_refused(await deliver(stack, tampered, header=good))  # a valid signature of another body
    assert (await stack.connection("bea")).status.value == "active"
    assert (await stack.connection("bea")).monthly_cap == micros_from_usd("10")
    # None of them was remembered: the genuine event still applies.
    assert (await deliver(stack, revoke)).json()["applied"] is True
    assert (await stack.connection("bea")).status.value == "revoked"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        {"type": "grant.revoked", "created": 1, "data": {"grant_id": "grt_x"}},
        {"id": "evt_1", "created": 1, "data": {"grant_id": "grt_x"}},
        {"id": "evt_1", "type": "grant.revoked", "data": {"grant_id": "grt_x"}},
        {"id": "evt_1", "type": "grant.revoked", "created": 1, "data": {}},
        {"id": "evt_1", "type": "grant.revoked", "created": 1, "data": "grt_x"},
        {"id": "evt_1", "type": "grant.updated", "created": 1, "data": {"grant_id": "grt_x"}},
        {"id": "evt_1", "type": "grant.updated", "created": 1, "data": {"grant_id": "grt_x", "monthly_usd": "-1"}},
        {"id": "evt_1", "type": "grant.updated", "created": 1, "data": {"grant_id": "grt_x", "monthly_usd": "ten"}},
    ],
)
async def test_a_malformed_body_is_refused(stack: Stack, body: bytes | dict[str, Any]) -> None:
    assert_refused(await deliver(stack, body))


async def test_events_the_app_cannot_act_on_are_acknowledged_without_changes(stack: Stack) -> None:
    record = await connected(stack, "cy")
    for unknown in (event("grt_not_ours", "grant.revoked"), event(str(record.grant_id), "grant.renamed")):
        response = await deliver(stack, unknown)
        assert response.status_code == 200 and response.json()["applied"] is False
    assert (await stack.connection("cy")).status.value == "active"


def test_the_tolerance_is_five_minutes_either_way() -> None:
    from wattfare_embed.consent._protocol import WebhookSignatureError, verify_webhook

    key, body, now = webhook_signing_key(new_key_pair().secret_key), b"{}", 1_764_031_697
    for skew in (-300, 0, 300):
        assert verify_webhook(key, sign_webhook(key, now + skew, body), body, now) == now + skew
    for skew in (-301, 301):
        with pytest.raises(WebhookSignatureError, match="5 minutes"):
            verify_webhook(key, sign_webhook(key, now + skew, body), body, now)
    rotated = sign_webhook(b"old key" * 5, now, body) + "," + sign_webhook(key, now, body).split(",")[1]
    assert verify_webhook(key, rotated, body, now) == now, "any v1 value may match (key rotation)"
