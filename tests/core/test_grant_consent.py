"""A one-time grant's consent round trip over HTTP: asked with the publishable key alone, a grant
(never a connection) at the end, the callback usable once, and every bad ask a typed 400."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2

from wattfare_embed.grants import grant_token_hash

from .conftest import MOUNT, Harness, callback_result, error_code


async def ask(harness: Harness, browser: httpx2.AsyncClient | None = None, **body: Any) -> httpx2.Response:
    body.setdefault("publishableKey", harness.keys.publishable_key)
    return await (browser or harness.browser).post("/api/v1/grants/consent", json=body)


async def test_an_approved_grant_reaches_the_opener_and_spends_nothing_of_any_connection(harness: Harness) -> None:
    started = await ask(harness, requests=3, maxUsd=0.5)
    assert started.status_code == 200, started.text
    page = await harness.browser.get(started.json()["url"], follow_redirects=True)

    result = callback_result(page)
    assert result["type"] == "wattfare:grant" and result["error"] is None
    grant = result["grant"]
    assert grant["grantToken"].startswith("wfg_")
    assert (grant["requests"], grant["maxUsd"]) == (3, 0.5)
    assert "wfg_" not in result["returnTo"]  # the token travels only in the message to the opener
    record = await harness.embed.store.find_grant(harness.keys.app_id, grant_token_hash(grant["grantToken"]))
    assert record is not None and (record.requests_allowed, record.max_cost) == (3, 500_000)
    assert record.expires_at - record.created_at == 24 * 3600  # the default lifetime
    status = await harness.embed.grant(grant["grantToken"]).status()
    assert (status.active, status.requests_left) == (True, 3)


async def test_the_callback_of_a_grant_works_once(harness: Harness) -> None:
    started = await ask(harness, requests=1)
    consent = await harness.browser.get(started.json()["url"])
    callback = consent.headers["location"]
    first = await harness.browser.get(callback)
    replayed = await harness.browser.get(callback)

    assert callback_result(first)["grant"]["grantToken"].startswith("wfg_")
    again = callback_result(replayed)
    assert again["grant"] is None and again["error"]["code"] == "grant_invalid"


async def test_a_redirect_round_trip_comes_back_with_the_grant_in_the_fragment(harness: Harness) -> None:
    started = await ask(harness, requests=2, mode="redirect", returnTo="/tool?x=1")
    consent = await harness.browser.get(started.json()["url"])
    back = await harness.browser.get(consent.headers["location"])

    # Sent back by the page's script: the token is in the body, never in a Location header.
    assert back.status_code == 200 and "location" not in back.headers
    result = callback_result(back)
    assert result["navigate"] is True and result["grant"]["grantToken"].startswith("wfg_")
    target = urlsplit(result["returnTo"])
    assert (target.path, parse_qs(target.query)) == ("/tool", {"x": ["1"], "wattfare": ["granted"]})
    terms = parse_qs(target.fragment)
    assert terms["wattfare_grant"][0].startswith("wfg_") and terms["requests"] == ["2"]


async def test_bad_asks_are_typed_400s(harness: Harness) -> None:
    other = await ask(harness, requests=3, publishableKey="pk_test_someoneelse")
    none = await ask(harness, requests=0)
    many = await ask(harness, requests=1001)
    text = await ask(harness, requests="3")
    dear = await ask(harness, requests=3, maxUsd=21)  # above max_grant_usd (20)
    mode = await ask(harness, requests=3, mode="iframe")

    for response in (other, none, many, text, dear, mode):
        assert response.status_code == 400, response.text
        assert error_code(response) == "invalid_request"


async def test_denying_makes_no_grant(keys: Any, sqlite_url: str) -> None:
    from wattfare_embed import DevConsent

    from .conftest import make_embed, running

    async with running(make_embed(keys, sqlite_url, consent=DevConsent(auto_approve=False))) as harness:
        started = await ask(harness, requests=3)
        page = await harness.browser.get(started.json()["url"])
        assert "Let Acme" in page.text or "AI requests" in page.text
        state = parse_qs(urlsplit(started.json()["url"]).query)["state"][0]
        denied = await harness.browser.post(
            f"{MOUNT.removeprefix(MOUNT)}/dev/consent", data={"state": state, "decision": "deny"}, follow_redirects=True
        )
        result = callback_result(denied)
        assert result["grant"] is None and result["error"] is None
