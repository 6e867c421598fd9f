"""Bad input is a typed 4xx, never a 500, and changes nothing: the embed's routes, the proxy, webhooks."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.core.conftest import LOGIN_COOKIE, Harness, bearer, error_code, run_sql
from tests.proxy.conftest import CHAT, EMBEDDINGS, MINI, Proxied, error_of
from wattfare_embed import InvalidRequestError
from wattfare_embed.consent._protocol import sign_webhook, webhook_signing_key
from wattfare_embed.store import schema

from .conftest import nothing_held_or_charged

HUGE = ["1e999999", "1e308", 1e308, "-1e999999", "1e-9999999", "9" * 100, "NaN", "sNaN", "Infinity"]
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
# As deep as fits the 64 KiB the embed's own JSON routes and webhooks take.
DEEP_SMALL = b"[" * 30_000 + b"]" * 30_000
DEEP_SMALL_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
# Digits outside ASCII: "²".isdigit() is true, and int("²") raises. Header bytes are read as
# Latin-1, which makes b"\xb2" the "²" of the report; the rest arrive as UTF-8.
UNICODE_DIGITS = [
    b"\xb2",
    b"\xb9\xb2\xb3",
    b"17640316\xb2",
    "\u0661\u0667\u0666\u0664".encode(),
    "".join(chr(0xFF10 + int(digit)) for digit in "1764031697").encode(),
]


def refused(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert error_code(response) == "invalid_request"
    return str(response.json()["error"]["message"])


async def consent_rows(harness: Harness) -> int:
    return int(await harness.count_consent_requests())


async def webhook_rows(harness: Harness) -> int:
    await harness.embed.startup()
    query = select(func.count()).select_from(schema.webhook_events)
    return int(await run_sql(harness.embed, lambda db: db.execute(query).scalar_one()))


# -- the embed's own routes -----------------------------------------------------------------------


async def test_huge_exponents_in_every_money_field_are_refused_and_change_nothing(site: Harness, user_id: str) -> None:
    await site.connect(user_id, monthly_usd=10)
    before, rows = await site.server_status(user_id), await consent_rows(site)
    token = await site.session(user_id)
    site.browser.cookies.set(LOGIN_COOKIE, user_id)
    for amount in HUGE:
        refused(await site.browser.post("/api/v1/connections", json={"monthlyUsd": amount}, headers=bearer(token)))
        refused(await site.browser.post("/api/v1/consent", json={"monthlyUsd": amount}, headers=bearer(token)))
        body = {"appUserId": user_id, "requestLimit": {"monthlyUsd": amount}}
        refused(await site.browser.post("/api/v1/sessions", json=body, headers=site.server_auth))
        refused(await site.browser.get("/connect", params={"monthlyUsd": str(amount)}))
        with pytest.raises(InvalidRequestError):
            await site.embed.create_session(user_id, monthly_usd=amount)
    # The same as a bare JSON number (which Python's json reads as infinity).
    for path in ("/api/v1/connections", "/api/v1/consent"):
        raw = b'{"monthlyUsd": 1e999999}'
        response = await site.browser.post(
            path, content=raw, headers={**bearer(token), "content-type": "application/json"}
        )
        assert "too large" in refused(response)
    assert await site.server_status(user_id) == before
    assert await consent_rows(site) == rows


async def test_a_huge_exponent_on_the_development_consent_form_changes_nothing(
    manual_site: Harness, user_id: str
) -> None:
    token = await manual_site.session(user_id)
    url = await manual_site.consent_url(token, monthlyUsd=5)
    state = url.split("state=")[1]
    for amount in ("1e999999", "1e308", "NaN"):
        form = {"state": state, "monthlyUsd": amount, "decision": "approve"}
        refused(await manual_site.browser.post("/dev/consent", data=form))
    assert (await manual_site.server_status(user_id))["connected"] is False
    # The consent request itself is untouched: approving properly still works.
    approved = await manual_site.browser.post(
        "/dev/consent", data={"state": state, "monthlyUsd": "5", "decision": "approve"}, follow_redirects=True
    )
    assert approved.status_code == 200 and (await manual_site.server_status(user_id))["monthlyUsd"] == 5


@pytest.mark.parametrize("deep", [(DEEP, DEEP_SMALL), (DEEP_OBJECT, DEEP_SMALL_OBJECT)], ids=["arrays", "objects"])
async def test_json_nested_a_hundred_thousand_levels_is_refused_by_depth(
    site: Harness, user_id: str, deep: tuple[bytes, bytes]
) -> None:
    token = await site.session(user_id)
    rows = await consent_rows(site)
    json_headers = {"content-type": "application/json"}
    hundred_thousand, fits = deep
    for path, auth in (
        ("/api/v1/sessions", site.server_auth),
        ("/api/v1/consent", bearer(token)),
        ("/api/v1/connections", bearer(token)),
    ):
        # These routes take 64 KiB: a hundred thousand levels is too large before it is too deep.
        response = await site.browser.post(path, content=hundred_thousand, headers={**auth, **json_headers})
        assert "larger than 65536 bytes" in refused(response, 413)
        response = await site.browser.post(path, content=fits, headers={**auth, **json_headers})
        assert "nests deeper than 64" in refused(response)
    assert await consent_rows(site) == rows
    assert (await site.server_status(user_id))["connected"] is False


async def test_a_lone_surrogate_user_id_never_gets_a_token(site: Harness) -> None:
    for raw in (b'{"appUserId": "\\ud800"}', b'{"appUserId": "a\\udfff"}', b'{"appUserId": "\xed\xa0\x80"}'):
        response = await site.browser.post(
            "/api/v1/sessions", content=raw, headers={**site.server_auth, "content-type": "application/json"}
        )
        assert "surrogate" in refused(response)
    for call in (lambda: site.embed.create_session("\ud800"), lambda: site.embed.status("x\udc00")):
        with pytest.raises(InvalidRequestError):
            await call()
    with pytest.raises(InvalidRequestError):
        site.embed.user("\ud800")


async def test_a_null_cap_is_a_clear_error_and_an_empty_body_asks_nothing(site: Harness, user_id: str) -> None:
    await site.connect(user_id, monthly_usd=10)
    before, rows = await site.server_status(user_id), await consent_rows(site)
    token = await site.session(user_id)

    message = refused(await site.browser.post("/api/v1/connections", json={"monthlyUsd": None}, headers=bearer(token)))
    assert "null" in message
    nothing = await site.browser.post("/api/v1/connections", json={}, headers=bearer(token))
    assert nothing.status_code == 200 and "consentUrl" not in nothing.json()
    assert await site.server_status(user_id) == before and await consent_rows(site) == rows


async def test_an_oversized_or_malformed_host_is_refused_before_a_consent_row_is_written(
    site: Harness, user_id: str
) -> None:
    token = await site.session(user_id)
    for host in ("a" * 2049, "evil.example/path", "user@evil.example", "a" * 250 + ".example.com"):
        response = await site.browser.post(
            "/api/v1/consent", json={"monthlyUsd": 5}, headers={**bearer(token), "host": host}
        )
        assert "Host" in refused(response)
    assert await consent_rows(site) == 0


async def test_states_no_database_could_hold_are_unknown_not_a_crash(site: Harness) -> None:
    for state in ("\x00", "a\x00b" * 10, "x" * 5000, "é" * 30):
        callback = await site.browser.get("/callback", params={"state": state, "code": "c"})
        assert callback.status_code == 400 and "unknown" in callback.text
        page = await site.browser.get("/dev/consent", params={"state": state})
        assert page.status_code == 402 and "can no longer be used" in page.text
    assert await consent_rows(site) == 0


async def test_a_bad_user_id_never_reaches_the_store(site: Harness) -> None:
    for user in ("\x00", " wsv", "wsv ", "\u3000x", "a" * 256, "\x85"):
        response = await site.browser.get("/api/v1/status", params={"appUserId": user}, headers=site.server_auth)
        refused(response)


# -- the proxy ------------------------------------------------------------------------------------


def _chat(**overrides: Any) -> dict[str, Any]:
    return {"model": MINI, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, **overrides}


async def _post_raw(stack: Proxied, user: str, body: bytes, content_type: str | None = "application/json") -> Any:
    headers = stack.headers(user)
    if content_type is not None:
        headers["content-type"] = content_type
    return await stack.http.post(CHAT, content=body, headers=headers)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None, "json"])
async def test_a_body_not_declared_json_is_refused_and_nothing_is_forwarded(
    lite_proxy: Proxied, user_id: str, content_type: str | None
) -> None:
    await lite_proxy.connect(user_id)
    for path in (CHAT, EMBEDDINGS):
        body = json.dumps(_chat(input="hi")).encode()
        headers = lite_proxy.headers(user_id)
        if content_type is not None:
            headers["content-type"] = content_type
        response = await lite_proxy.http.post(path, content=body, headers=headers)
        assert error_of(response) == (400, "invalid_request")
        assert "Content-Type: application/json" in response.json()["error"]["message"]
    await nothing_held_or_charged(lite_proxy, user_id)


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        DEEP_OBJECT,
        b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "\xed\xb0\x80"}]}',
        b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}',
        b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "seed": -Infinity}',
        b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999999}',
        json.dumps(_chat(model="openai/" + "x" * 300)).encode(),
        json.dumps(_chat(model="openai/gpt-4o-mini\u0000")).encode(),
        json.dumps(_chat(model="openai/\u0085gpt")).encode(),
    ],
    ids=[
        "deep-arrays", "deep-objects", "lone-surrogate-escape", "lone-surrogate-bytes", "nan", "infinity",
        "minus-infinity", "overflowing-number", "model-id-past-the-column", "model-id-with-nul", "model-id-c1-control",
    ],
)  # fmt: skip
async def test_hostile_proxy_bodies_are_refused_before_anything_is_held(
    proxied: Proxied, user_id: str, body: bytes
) -> None:
    await proxied.connect(user_id)

    response = await _post_raw(proxied, user_id, body)

    assert error_of(response) == (400, "invalid_request")
    assert response.headers["x-should-retry"] == "false"
    await nothing_held_or_charged(proxied, user_id)


async def test_many_shallow_brackets_and_brackets_inside_text_are_not_nesting(
    lite_proxy: Proxied, user_id: str
) -> None:
    await lite_proxy.connect(user_id)
    # 200 messages (400 brackets, two levels each) and a prompt of 100,000 brackets, in a string.
    messages = [{"role": "user", "content": "[" * 100_000}] + [{"role": "user", "content": "hi"}] * 199
    body = json.dumps({"model": "openai/gpt-4o-mini", "max_tokens": 20, "messages": messages}).encode()
    response = await _post_raw(lite_proxy, user_id, body)
    assert response.status_code == 200, response.text
    [call] = lite_proxy.upstream_calls()
    assert call.json["messages"] == messages
    await lite_proxy.settled(user_id, 1)


async def test_a_well_formed_surrogate_pair_is_still_text(lite_proxy: Proxied, user_id: str) -> None:
    await lite_proxy.connect(user_id)
    body = b'{"model": "openai/gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'  # noqa: E501
    response = await _post_raw(lite_proxy, user_id, body)
    assert response.status_code == 200, response.text
    [call] = lite_proxy.upstream_calls()
    assert call.json["messages"][0]["content"] == "\U0001f600"
    await lite_proxy.settled(user_id, 1)


# -- webhooks -------------------------------------------------------------------------------------


async def _deliver(site: Harness, body: bytes, signature: str | bytes | None = None) -> Any:
    key = webhook_signing_key(site.keys.secret_key)
    header = signature if signature is not None else sign_webhook(key, int(time.time()), body)
    return await site.browser.post(
        "/webhooks", content=body, headers={"content-type": "application/json", "wattfare-signature": header}
    )


async def test_unicode_digits_in_the_signature_timestamp_are_refused(site: Harness) -> None:
    body = json.dumps({"id": "evt_1", "type": "grant.revoked", "created": 1, "data": {"grant_id": "g"}}).encode()
    digest = sign_webhook(webhook_signing_key(site.keys.secret_key), int(time.time()), body).split("v1=")[1]
    rows = await webhook_rows(site)
    for timestamp in UNICODE_DIGITS:
        response = await _deliver(site, body, b"t=" + timestamp + b",v1=" + digest.encode())
        assert "Wattfare-Signature" in refused(response)
    assert await webhook_rows(site) == rows


@pytest.mark.parametrize(
    "body",
    [
        DEEP_SMALL,
        b'{"id": "evt_2", "type": "grant.revoked", "created": NaN, "data": {"grant_id": "g"}}',
        b'{"id": "evt_\\ud800", "type": "grant.revoked", "created": 1, "data": {"grant_id": "g"}}',
        b'{"id": "evt_\\u0000", "type": "grant.revoked", "created": 1, "data": {"grant_id": "g"}}',
        b'{"id": "evt_3", "type": "grant.revoked", "created": 1, "data": {"grant_id": "g\\u0000"}}',
        b'{"id": "evt_4", "type": "grant.updated", "created": 1, "data": {"grant_id": "g", "monthly_usd": "1e999999"}}',
        b'{"id": "evt_5", "type": "grant.updated", "created": 1, "data": {"grant_id": "g", "monthly_usd": "5",'
        b' "hard_limit_usd": "1e308"}}',
    ],
    ids=["deep", "nan", "surrogate-id", "nul-id", "nul-grant", "huge-cap", "huge-hard-limit"],
)
async def test_signed_but_hostile_webhook_bodies_are_refused_and_not_recorded(site: Harness, body: bytes) -> None:
    rows = await webhook_rows(site)
    refused(await _deliver(site, body))
    assert await webhook_rows(site) == rows
