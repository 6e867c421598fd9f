"""The whole round trip, embed ↔ domain on two origins: login, consent screen, approve, callback."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from wattfare_embed.money import micros_from_usd

from .conftest import APP_NAME, Stack


async def test_connecting_through_the_domain_stores_the_grant_and_its_own_capped_key(any_db_stack: Stack) -> None:
    stack = any_db_stack
    browser = stack.browser()
    url = await stack.consent_url(browser, "ada", monthly_usd="10")
    assert url.startswith(stack.domain_url + "/authorize?"), "the consent happens on the domain's own origin"
    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == [stack.keys.publishable_key] and query["monthly_usd"] == ["10.00"]
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [stack.mount_url + "/callback"]

    first = await browser.get(url)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next="), "signed out: log in"
    page = await stack.consent_page(browser, url)
    assert f"Allow {APP_NAME} to spend from your AI budget?" in page.text
    assert stack.email in page.text, "the screen says who pays"
    assert "calendar month" in page.text and 'value="10.00"' in page.text
    assert (
        page.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )

    redirect = await stack.decide(browser, page, monthly_usd="7.50")  # the user approves less than asked
    location = redirect.headers["location"]
    assert redirect.status_code == 303 and location.startswith(stack.mount_url + "/callback?")
    assert set(parse_qs(urlsplit(location).query)) == {"code", "state"}
    callback = await browser.follow(redirect)
    assert callback.status_code == 200 and "Connected" in callback.text and "$7.5 monthly cap" in callback.text

    record = await stack.connection("ada")
    assert record.status.value == "active" and record.authority == "hosted"
    assert record.monthly_cap == micros_from_usd("7.50") and record.hard_limit == micros_from_usd("7.50")
    assert record.grant_id is not None and record.grant_id.startswith("grt_")
    assert record.upstream_url == stack.fake_url + "/api/v1"
    key = stack.funding_key(record)
    assert key.limit == Decimal("7.5") and key.limit_reset == "monthly", "the upstream key's own limit is the cap"
    assert record.sealed_credential is not None and key.secret not in record.sealed_credential, "encrypted at rest"

    grant = await stack.domain.store.get_grant(record.grant_id)
    assert grant is not None and grant.status == "active" and grant.key_hash == key.hash

    response = await stack.chat("ada")
    assert response.status_code == 200, response.text
    assert stack.fake.spend_by_key().get(key.secret, Decimal(0)) > 0, "the spend is charged to the grant's own key"
    dashboard = await stack.dashboard(browser)
    assert APP_NAME in dashboard.text and "$7.50" in dashboard.text


async def test_denying_sends_the_user_back_not_connected(stack: Stack) -> None:
    browser = stack.browser()
    page = await stack.consent_page(browser, await stack.consent_url(browser, "bob"))
    redirect = await stack.decide(browser, page, decision="deny")
    assert parse_qs(urlsplit(redirect.headers["location"]).query)["error"] == ["access_denied"]
    callback = await browser.follow(redirect)
    assert callback.status_code == 200 and "You did not connect a budget" in callback.text
    assert (await stack.embed.status("bob")).connected is False
    assert stack.fake.keys.managed() == [], "no upstream key is minted without approval"


async def test_disconnecting_from_the_app_revokes_the_grant_and_deletes_its_key(stack: Stack) -> None:
    record = await stack.connect("cy")
    key = stack.funding_key(record)
    await stack.embed.user("cy").disconnect()
    assert record.grant_id is not None
    grant = await stack.domain.store.get_grant(record.grant_id)
    assert grant is not None and grant.status == "revoked", "RFC 7009 revocation reached the domain"
    assert stack.fake.keys.find(key.secret) is None, "the upstream key is deleted"
    assert not [job for job in await stack.domain.outbox.jobs() if job["kind"] == "webhook"], (
        "the app asked: no webhook"
    )


async def test_connecting_again_replaces_the_grant_and_the_old_key_dies(stack: Stack) -> None:
    first = await stack.connect("dee", monthly_usd="5")
    old_key = stack.funding_key(first)
    second = await stack.connect("dee", monthly_usd="20")
    assert second.grant_id != first.grant_id and second.monthly_cap == micros_from_usd("20")
    assert stack.fake.keys.find(old_key.secret) is None, "one app, one live key per user"
    assert stack.funding_key(second).limit == Decimal("20")
    assert (await stack.chat("dee")).status_code == 200
    # The domain announces the replaced grant later; the embed no longer holds it and changes nothing.
    await asyncio.sleep(0.8)
    assert (await stack.connection("dee")).status.value == "active"
