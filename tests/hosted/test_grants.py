"""One-time grants on the consent domain: the visitor signs in there, approves a few requests under
a dollar cap, the grant is funded from their budget with its own upstream key (limit = the cap,
never reset), it is on their dashboard, and revoking it there stops the app's next request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import async_playwright, expect

from wattfare_embed.grants import grant_token_hash
from wattfare_embed.store import GrantRecord
from wattfare_embed.testing.fake_openrouter import FakeKey
from wattfare_embed.testing.waiting import poll

from .conftest import APP_NAME, MINI, PASSWORD, Browser, Stack
from .test_browser import CHROMIUM, CHROMIUM_ARGS, IN_CI

CALLBACK_RESULT = '<script id="wattfare-result" type="application/json">'


async def grant_consent_url(stack: Stack, browser: Browser, requests: int = 3, max_usd: float = 0.5) -> str:
    response = await browser.http.post(
        stack.mount_url + "/api/v1/grants/consent",
        json={"publishableKey": stack.keys.publishable_key, "requests": requests, "maxUsd": max_usd},
    )
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    return url


async def approve_grant(stack: Stack, requests: int = 3, max_usd: float = 0.5) -> tuple[str, Browser]:
    """The whole round trip over HTTP: consent URL, sign in on the domain, the screen, Approve, callback."""
    browser = stack.browser()
    page = await stack.consent_page(browser, await grant_consent_url(stack, browser, requests, max_usd))
    assert f"Let {APP_NAME} make {requests} AI requests for you?" in page.text
    assert f"You ({stack.email})" in page.text and "in total" in page.text and "Expires" in page.text
    assert 'name="monthly_usd"' not in page.text  # a grant's terms are shown, not edited
    redirect = await stack.decide(browser, page)
    assert redirect.status_code == 303, redirect.text
    callback = await browser.follow(redirect)
    assert callback.status_code == 200, callback.text
    token = callback.text.split('"grantToken": "', 1)[1].split('"', 1)[0]
    assert token.startswith("wfg_")
    return token, browser


async def grant_record(stack: Stack, token: str) -> GrantRecord:
    record = await stack.embed.store.find_grant(stack.keys.app_id, grant_token_hash(token))
    assert record is not None
    return record


def funding_key(stack: Stack, record: GrantRecord) -> FakeKey:
    secret = stack.embed.open_credential_of_grant(record)
    assert secret is not None
    key = stack.fake.keys.find(secret)
    assert key is not None, "the fake does not know the grant's key"
    return key


async def spend(stack: Stack, token: str) -> httpx2.Response:
    payload = {"model": MINI, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20}
    headers = {"authorization": f"Bearer {stack.keys.secret_key}", "x-wattfare-grant": token}
    async with httpx2.AsyncClient(timeout=15) as http:
        return await http.post(stack.mount_url + "/api/v1/chat/completions", json=payload, headers=headers)


async def test_a_grant_is_funded_by_its_own_capped_key_and_spends_three_requests(stack: Stack) -> None:
    token, _browser = await approve_grant(stack, requests=3, max_usd=0.5)
    record = await grant_record(stack, token)
    key = funding_key(stack, record)
    # The upstream key is the hard ceiling: limited to the grant's cap in all, never reset.
    assert (str(key.limit), key.limit_reset) == ("0.5", None)
    assert (record.requests_allowed, record.max_cost, record.authority) == (3, 500_000, "hosted")
    assert record.authority_grant_id is not None and record.authority_grant_id.startswith("grt_")

    answers = [await spend(stack, token) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 402]
    assert answers[3].json()["error"]["code"] == "grant_invalid"
    assert key.usage > 0  # charged to the visitor's key, not the app's
    assert await stack.embed.store.get_connection(stack.keys.app_id, "ada", 0) is None


async def test_revoking_on_the_dashboard_stops_the_next_request(stack: Stack) -> None:
    token, browser = await approve_grant(stack)
    assert (await spend(stack, token)).status_code == 200
    record = await grant_record(stack, token)
    key = funding_key(stack, record)
    dashboard = await stack.dashboard(browser)
    assert "One-time: 3 requests" in dashboard.text

    revoked = await stack.on_dashboard(browser, record.authority_grant_id or "", "revoke")
    assert revoked.status_code == 303

    async def ended() -> bool | None:
        return True if (await grant_record(stack, token)).revoked else None

    await poll(ended, what="the grant.revoked webhook to reach the app")
    refused = await spend(stack, token)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "grant_invalid"
    assert "revoked" in refused.json()["error"]["message"]
    assert stack.fake.keys.find(key.secret) is None  # the domain deleted the grant's key too


async def test_a_monthly_connection_does_not_replace_a_grant_nor_the_reverse(stack: Stack) -> None:
    token, _browser = await approve_grant(stack)
    await stack.connect("ada", "10")
    assert not (await grant_record(stack, token)).revoked
    assert (await spend(stack, token)).status_code == 200
    assert (await stack.chat("ada")).status_code == 200


async def test_the_grant_popup_on_the_domains_own_origin_in_chromium(stack: Stack, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: the hosted grant browser test needs it"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as driver:
        chromium = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await chromium.new_context(viewport={"width": 960, "height": 640})
        context.set_default_timeout(10_000)
        errors: list[str] = []
        context.on("weberror", lambda error: errors.append(str(error.error)))
        page = await context.new_page()
        await page.goto(stack.app_url + "/")
        key = stack.keys.publishable_key
        async with page.expect_popup() as opened:
            # evaluate() runs as a user gesture, as a click would.
            asked = page.evaluate(
                "key => import('/wattfare/wattfare.js').then(m => m.createWattfare({ publishableKey: key })"
                ".requestGrant({ requests: 2, maxUsd: 0.25 }))",
                key,
            )
            result_task = asyncio.ensure_future(asked)
        popup = await opened.value
        await expect(popup.get_by_role("heading", name="Sign in to Wattfare")).to_be_visible()
        assert popup.url.startswith(stack.domain_url + "/login")
        await popup.get_by_label("Email").fill(stack.email)
        await popup.get_by_label("Password").fill(PASSWORD)
        await popup.get_by_role("button", name="Sign in").click()
        await expect(popup.get_by_role("heading", name=f"Let {APP_NAME} make 2 AI requests for you?")).to_be_visible()
        assert popup.url.startswith(stack.domain_url + "/authorize?")
        await expect(popup.locator("#grant-cap")).to_have_text("$0.25 in total")
        await expect(popup.locator("#grant-payer")).to_contain_text(stack.email)
        await popup.get_by_role("button", name="Approve").click()

        result = await result_task
        assert result["granted"] is True and result["requests"] == 2 and result["maxUsd"] == 0.25
        assert (await spend(stack, result["grantToken"])).status_code == 200
        assert errors == []
        await chromium.close()
