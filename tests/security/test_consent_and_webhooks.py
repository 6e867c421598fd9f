"""The consent flow and webhooks under abuse: bounded rows, the host a request names, replays."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from typing import Any

from sqlalchemy import update

from tests.core.conftest import LOGIN_COOKIE, Harness, bearer, make_embed, run_sql, running
from wattfare_embed import AppKeys, new_key_pair
from wattfare_embed.consent._protocol import sign_webhook, webhook_signing_key
from wattfare_embed.consent_flow import BROWSER_COOKIE, SECURE_BROWSER_COOKIE
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import NewConnection, schema

# -- consent requests -----------------------------------------------------------------------------


async def test_one_user_opening_consent_links_in_a_loop_keeps_a_bounded_number_of_rows(
    site: Harness, user_id: str
) -> None:
    token = await site.session(user_id)
    urls = await asyncio.gather(*(site.consent_url(token, monthlyUsd=5) for _ in range(60)))
    assert await site.count_consent_requests() <= site.embed.settings.max_open_consents_per_user
    # The newest link still works; the others were dropped, and are unknown now.
    newest = await site.consent_url(token, monthlyUsd=5)
    page = await site.browser.get(newest, follow_redirects=True)
    assert page.status_code == 200 and (await site.server_status(user_id))["connected"] is True
    stale = await site.browser.get(urls[0], follow_redirects=True)
    assert stale.status_code in (400, 402)
    assert await site.count_consent_requests() <= site.embed.settings.max_open_consents_per_user


async def test_expired_consent_requests_are_swept(site: Harness, user_id: str) -> None:
    token = await site.session(user_id)
    for _ in range(3):
        await site.consent_url(token)
    table = schema.consent_requests
    long_ago = int(time.time()) - 2 * 3600
    mine = update(table).where(table.c.app_id == site.keys.app_id).values(expires_at=long_ago)
    await run_sql(site.embed, lambda db: db.execute(mine))

    assert await site.embed.store.prune_consent_requests(int(time.time())) >= 3
    assert await site.count_consent_requests() == 0


# -- the host a request names ---------------------------------------------------------------------


async def test_a_forged_host_is_refused_when_allowed_hosts_is_set(keys: AppKeys, sqlite_url: str) -> None:
    embed = make_embed(keys, sqlite_url, allowed_hosts=["127.0.0.1", "*.acme.example"])
    async with running(embed) as site:
        token = await site.session("ada")
        forged = await site.browser.post("/api/v1/consent", json={}, headers={**bearer(token), "host": "evil.example"})
        assert forged.status_code == 400 and "allowed_hosts" in forged.json()["error"]["message"]
        site.browser.cookies.set(LOGIN_COOKIE, "ada")
        connect = await site.browser.get("/connect", headers={"host": "attacker.example:8000"})
        assert connect.status_code == 400
        callback = await site.browser.get("/callback", params={"state": "x" * 32}, headers={"host": "evil.example"})
        assert callback.status_code == 400
        assert await site.count_consent_requests() == 0

        # The allowed names still work, subdomains of a wildcard included.
        for host in (None, "app.acme.example"):
            headers = {**bearer(token), **({"host": host} if host else {})}
            response = await site.browser.post("/api/v1/consent", json={}, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["url"].startswith(f"http://{host or '127.0.0.1'}")


async def test_public_url_decides_the_consent_urls_whatever_the_host_says(keys: AppKeys, sqlite_url: str) -> None:
    embed = make_embed(keys, sqlite_url, public_url="https://app.acme.example")
    async with running(embed) as site:
        token = await site.session("ada")
        response = await site.browser.post(
            "/api/v1/consent", json={}, headers={**bearer(token), "host": "evil.example"}
        )
        assert response.status_code == 200
        assert response.json()["url"].startswith("https://app.acme.example/wattfare/dev/consent?")


# -- the browser-binding cookie -------------------------------------------------------------------


def _set_cookie(response: Any, name: str) -> str:
    [header] = [value for value in response.headers.get_list("set-cookie") if value.startswith(name + "=")]
    return str(header)


async def test_over_https_the_browser_cookie_is_host_prefixed_and_a_planted_one_is_ignored(
    keys: AppKeys, sqlite_url: str
) -> None:
    embed = make_embed(keys, sqlite_url, public_url="https://app.acme.example")
    async with running(embed) as site:
        token = await site.session("ada")
        response = await site.browser.post("/api/v1/consent", json={}, headers=bearer(token))
        cookie = _set_cookie(response, SECURE_BROWSER_COOKIE).lower()
        assert "; secure" in cookie and "; path=/;" in cookie + ";" and "domain=" not in cookie
        assert "; httponly" in cookie and "samesite=lax" in cookie
        assert not any(value.startswith(BROWSER_COOKIE + "=") for value in response.headers.get_list("set-cookie"))

        # A sibling subdomain can set `wattfare_browser` for the parent domain, never the `__Host-` one:
        # the attacker's own flow, finished in the victim's browser carrying the planted cookie, fails.
        attacker = site.new_browser()
        started = await attacker.post("/api/v1/consent", json={}, headers=bearer(await site.session("mallory")))
        planted = _set_cookie(started, SECURE_BROWSER_COOKIE).split(";")[0].split("=", 1)[1]
        code_page = await attacker.get(started.json()["url"].replace("https://app.acme.example", site.base_url))
        callback = code_page.headers["location"].replace("https://app.acme.example", site.base_url)
        victim = site.new_browser(cookies={BROWSER_COOKIE: planted})
        finished = await victim.get(callback)
        assert finished.status_code == 400 and "another browser" in finished.text
        assert (await site.server_status("mallory"))["connected"] is False
        await attacker.aclose()
        await victim.aclose()


async def test_on_plain_http_localhost_the_cookie_stays_unprefixed_on_the_mount(site: Harness) -> None:
    token = await site.session("ada")
    response = await site.browser.post("/api/v1/consent", json={}, headers=bearer(token))
    cookie = _set_cookie(response, BROWSER_COOKIE).lower()
    assert "path=/wattfare" in cookie and "secure" not in cookie


# -- webhooks -------------------------------------------------------------------------------------


async def _grant(site: Harness, user: str, *, cap: str = "10", hard_limit: str | None = None) -> str:
    grant_id = "grt_" + secrets.token_hex(8)
    await site.embed.startup()
    sealed = site.embed.credentials.seal("sk-or-v1-" + secrets.token_hex(16), f"{site.keys.app_id}/{user}")
    new = NewConnection(
        site.keys.app_id,
        user,
        "hosted",
        micros_from_usd(cap),
        sealed,
        grant_id=grant_id,
        hard_limit=micros_from_usd(hard_limit) if hard_limit else None,
    )
    await site.embed.store.save_connection(new, int(time.time()))
    return grant_id


async def _deliver(site: Harness, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    signature = sign_webhook(webhook_signing_key(site.keys.secret_key), int(time.time()), body)
    return await site.browser.post(
        "/webhooks", content=body, headers={"content-type": "application/json", "wattfare-signature": signature}
    )


def _event(kind: str, grant_id: str, **data: Any) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(8),
        "type": kind,
        "created": int(time.time()),
        "data": {"grant_id": grant_id, **data},
    }


async def test_one_event_delivered_many_times_at_once_is_applied_exactly_once(site: Harness, user_id: str) -> None:
    grant_id = await _grant(site, user_id, cap="10")
    update_event = _event("grant.updated", grant_id, monthly_usd="4.00")
    answers = await asyncio.gather(*(_deliver(site, update_event) for _ in range(8)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [400] * 7, statuses
    assert sum(answer.json().get("applied") is True for answer in answers if answer.status_code == 200) == 1
    # A later cap, then the old event replayed: the replay is refused and changes nothing.
    assert (await _deliver(site, _event("grant.updated", grant_id, monthly_usd="6.00"))).status_code == 200
    assert (await _deliver(site, update_event)).status_code == 400
    assert (await site.server_status(user_id))["monthlyUsd"] == 6


async def test_a_cap_update_without_a_hard_limit_is_clamped_to_the_stored_one(site: Harness, user_id: str) -> None:
    grant_id = await _grant(site, user_id, cap="10", hard_limit="10")
    raised = await _deliver(site, _event("grant.updated", grant_id, monthly_usd="500.00"))
    assert raised.status_code == 200 and raised.json()["applied"] is True
    assert (await site.server_status(user_id))["monthlyUsd"] == 10, "never above the upstream key's own limit"
    # An event naming a new hard limit moves both.
    moved = await _deliver(site, _event("grant.updated", grant_id, monthly_usd="25.00", hard_limit_usd="25.00"))
    assert moved.status_code == 200 and (await site.server_status(user_id))["monthlyUsd"] == 25
    again = await _deliver(site, _event("grant.updated", grant_id, monthly_usd="90.00"))
    assert again.status_code == 200 and (await site.server_status(user_id))["monthlyUsd"] == 25


async def test_apps_sharing_a_database_each_apply_their_own_event_ids(keys: AppKeys, database_url: str) -> None:
    other = new_key_pair(app_id="t" + uuid.uuid4().hex[:12])
    async with running(make_embed(keys, database_url)) as first, running(make_embed(other, database_url)) as second:
        shared_id = "evt_" + secrets.token_hex(8)  # two domains may well number their events alike
        for site in (first, second):
            grant_id = await _grant(site, "ada", cap="10")
            event = {**_event("grant.updated", grant_id, monthly_usd="3.00"), "id": shared_id}
            applied = await _deliver(site, event)
            assert applied.status_code == 200 and applied.json()["applied"] is True
            assert (await site.server_status("ada"))["monthlyUsd"] == 3
            assert (await _deliver(site, event)).status_code == 400, "a replay within one app is still refused"
