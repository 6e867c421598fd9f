"""The consent round trip through the development page: one-time state, PKCE, browser binding, returnTo."""

from __future__ import annotations

import base64
import html
import json
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt
import pytest

from wattfare_embed import AppKeys, DevConsent, OpenRouterConsent, new_key_pair
from wattfare_embed.consent_flow import browser_hash
from wattfare_embed.pkce import new_verifier, s256_challenge
from wattfare_embed.store import ConsentRequest, ReservationRequest

from .conftest import (
    APP_NAME,
    BROWSER_COOKIE,
    LOGIN_COOKIE,
    MOUNT,
    Harness,
    bearer,
    callback_result,
    error_code,
    make_embed,
    refused_link_page,
    running,
)


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def _callback_location(harness: Harness, consent_url: str, browser: httpx2.AsyncClient | None = None) -> str:
    """Let the auto-approving page answer, but stop before following it back to the callback."""
    response = await (browser or harness.browser).get(consent_url)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert urlsplit(location).path == f"{MOUNT}/callback"
    return location


async def _not_connected(harness: Harness, user: str) -> None:
    status = await harness.server_status(user)
    assert status["connected"] is False and status["status"] == "not_connected"


@pytest.fixture
async def manual(keys: AppKeys, database_url: str) -> Any:
    """A consent page that waits for the user to press Approve or Deny."""
    async with running(make_embed(keys, database_url, consent=DevConsent(auto_approve=False))) as harness:
        yield harness


# -- the popup round trip ------------------------------------------------------------------------


async def test_consent_answers_a_one_time_url_and_an_httponly_lax_browser_cookie(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    response = await lite.browser.post("/api/v1/consent", json={"monthlyUsd": 5}, headers=bearer(token))
    assert response.status_code == 200
    assert set(response.json()) == {"url"}
    url = response.json()["url"]
    assert url.startswith(f"{lite.base_url}{MOUNT}/dev/consent?state=")
    cookie = next(value for value in response.headers.get_list("set-cookie") if value.startswith(BROWSER_COOKIE + "="))
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert f"path={MOUNT}" in attributes
    assert "secure" not in attributes  # plain http in tests; https sets Secure
    # A second request from the same browser keeps its id; the state differs every time.
    again = await lite.browser.post("/api/v1/consent", json={}, headers=bearer(token))
    assert again.json()["url"] != url
    assert BROWSER_COOKIE not in again.cookies or again.cookies[BROWSER_COOKIE] == response.cookies[BROWSER_COOKIE]
    assert await lite.count_consent_requests() == 2


async def test_auto_approve_round_trip_connects_with_the_requested_cap(harness: Harness, user_id: str) -> None:
    token = await harness.session(user_id)
    url = await harness.consent_url(token, monthlyUsd=7.5)
    page = await harness.browser.get(url, follow_redirects=True)
    assert page.status_code == 200
    assert [hop.status_code for hop in page.history] == [303]
    result = callback_result(page)
    assert result["origin"] == harness.base_url
    assert result["error"] is None
    assert result["status"]["connected"] is True
    assert result["status"]["monthlyUsd"] == 7.5
    assert result["status"]["appUserId"] == user_id
    assert "Connected" in page.text and "$7.5 monthly cap" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    status = await harness.server_status(user_id)
    assert status["connected"] is True and status["monthlyUsd"] == 7.5 and status["authority"] == "dev"


async def test_the_callback_page_posts_the_status_to_the_apps_exact_origin(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    page = await lite.browser.get(await lite.consent_url(token), follow_redirects=True)
    post = "postMessage({ type: result.type, status: result.status, grant: result.grant, error: result.error }, target)"
    assert post in page.text
    assert callback_result(page)["type"] == "wattfare:connect"
    assert "var target = result.origin;" in page.text
    assert '"*"' not in page.text and "'*'" not in page.text
    assert callback_result(page)["origin"] == lite.base_url


async def test_the_callback_page_uses_the_configured_public_url_as_origin(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    embed = make_embed(keys, sqlite_url, public_url="https://app.example/")
    async with running(embed) as harness:
        token = await harness.session(user_id)
        url = await harness.consent_url(token)
        assert url.startswith(f"https://app.example{MOUNT}/dev/consent?state=")
        # Deliver the browser to this server, as the public proxy in front of it would.
        location = await _callback_location(harness, url.replace("https://app.example", harness.base_url))
        assert location.startswith(f"https://app.example{MOUNT}/callback?")
        page = await harness.browser.get(location.replace("https://app.example", harness.base_url))
        assert callback_result(page)["origin"] == "https://app.example"


async def test_values_in_the_callback_page_cannot_break_out_of_the_script(keys: AppKeys, sqlite_url: str) -> None:
    async with running(make_embed(keys, sqlite_url, app_name="</script><script>alert(1)</script>")) as harness:
        user = "</script><img src=x onerror=alert(1)>"
        page_result = await harness.connect(user)
        token = await harness.session(user)
        page = await harness.browser.get(await harness.consent_url(token), follow_redirects=True)
        assert "<img src=x" not in page.text
        assert page.text.count("</script>") == 2
        assert page_result["status"]["appUserId"] == user


# -- the manual page: approve, deny, edited cap ------------------------------------------------------


async def test_the_consent_page_shows_the_app_name_and_the_requested_cap(manual: Harness, user_id: str) -> None:
    token = await manual.session(user_id)
    url = await manual.consent_url(token, monthlyUsd=12.5)
    page = await manual.browser.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert APP_NAME in page.text
    assert 'name="monthlyUsd"' in page.text and 'value="12.5"' in page.text
    assert f'value="{html.escape(_query(url)["state"])}"' in page.text
    assert 'value="approve"' in page.text and 'value="deny"' in page.text
    assert f'action="{MOUNT}/dev/consent"' in page.text
    assert user_id in page.text
    assert page.headers["x-frame-options"] == "DENY"
    await _not_connected(manual, user_id)


async def _decide(harness: Harness, url: str, decision: str, monthly_usd: str = "12.5") -> httpx2.Response:
    form = {"state": _query(url)["state"], "monthlyUsd": monthly_usd, "decision": decision}
    return await harness.browser.post("/dev/consent", data=form, follow_redirects=True)


async def test_approving_on_the_page_connects_with_the_approved_cap(manual: Harness, user_id: str) -> None:
    token = await manual.session(user_id)
    url = await manual.consent_url(token, monthlyUsd=12.5)
    page = await _decide(manual, url, "approve", monthly_usd="6.25")
    assert page.status_code == 200
    result = callback_result(page)
    assert result["status"]["connected"] is True and result["status"]["monthlyUsd"] == 6.25
    assert (await manual.server_status(user_id))["monthlyUsd"] == 6.25


async def test_denying_on_the_page_ends_not_connected(manual: Harness, user_id: str) -> None:
    token = await manual.session(user_id)
    url = await manual.consent_url(token)
    page = await _decide(manual, url, "deny")
    assert page.status_code == 200
    assert "access_denied" in str(page.url)
    result = callback_result(page)
    assert result["status"]["connected"] is False and result["error"] is None
    assert "Not connected" in page.text
    await _not_connected(manual, user_id)
    # The state is spent: approving afterwards is refused.
    late = await manual.browser.post(
        "/dev/consent", data={"state": _query(url)["state"], "monthlyUsd": "5", "decision": "approve"}
    )
    assert late.status_code == 402 and refused_link_page(late) == "grant_invalid"
    await _not_connected(manual, user_id)


async def test_an_authority_error_on_the_callback_ends_not_connected(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    state = _query(await lite.consent_url(token))["state"]
    page = await lite.browser.get("/callback", params={"error": "access_denied", "state": state})
    assert page.status_code == 200
    assert callback_result(page)["status"]["connected"] is False
    await _not_connected(lite, user_id)
    # OpenRouter drops the state when the user denies: still a calm "not connected".
    stateless = await lite.browser.get("/callback", params={"error": "access_denied"})
    assert stateless.status_code == 200 and callback_result(stateless)["status"]["connected"] is False


async def test_the_page_refuses_a_bad_approved_cap(manual: Harness, user_id: str) -> None:
    token = await manual.session(user_id)
    url = await manual.consent_url(token)
    for cap in ("0", "-1", "abc", "", "100000"):
        response = await _decide(manual, url, "approve", monthly_usd=cap)
        assert response.status_code == 400 and error_code(response) == "invalid_request", cap
    await _not_connected(manual, user_id)
    # The state is still usable once the user fixes the amount.
    fixed = await _decide(manual, url, "approve", monthly_usd="3")
    assert callback_result(fixed)["status"]["monthlyUsd"] == 3


async def test_the_dev_page_refuses_an_unknown_state(manual: Harness) -> None:
    for params in ({"state": "made-up"}, {}):
        response = await manual.browser.get("/dev/consent", params=params)
        assert response.status_code == 402 and refused_link_page(response) == "grant_invalid"
    posted = await manual.browser.post("/dev/consent", data={"state": "made-up", "decision": "approve"})
    assert posted.status_code == 402 and refused_link_page(posted) == "grant_invalid"


async def test_the_dev_page_refuses_an_oversized_form(manual: Harness, user_id: str) -> None:
    token = await manual.session(user_id)
    url = await manual.consent_url(token)
    form = {"state": _query(url)["state"], "monthlyUsd": "5", "decision": "approve", "pad": "x" * 5000}
    response = await manual.browser.post("/dev/consent", data=form)
    assert response.status_code == 413 and error_code(response) == "invalid_request"
    await _not_connected(manual, user_id)


async def test_the_dev_page_is_not_served_with_another_authority(keys: AppKeys, sqlite_url: str) -> None:
    async with running(make_embed(keys, sqlite_url, consent=OpenRouterConsent())) as harness:
        response = await harness.browser.get("/dev/consent", params={"state": "x"})
        assert response.status_code == 400 and error_code(response) == "invalid_request"


# -- one-time state -------------------------------------------------------------------------------


async def test_the_same_state_cannot_finish_twice(harness: Harness, user_id: str) -> None:
    token = await harness.session(user_id)
    location = await _callback_location(harness, await harness.consent_url(token, monthlyUsd=5))
    first = await harness.browser.get(location)
    assert callback_result(first)["status"]["monthlyUsd"] == 5
    # Lower the cap, then replay the callback: the replay must not restore 5.
    await harness.browser.post("/api/v1/connections", json={"monthlyUsd": 2}, headers=bearer(token))
    second = await harness.browser.get(location)
    assert second.status_code == 400
    result = callback_result(second)
    assert result["error"]["code"] == "grant_invalid"
    assert "already used" in result["error"]["message"]
    assert result["status"]["connected"] is False  # the page reveals no one's status
    assert "Not connected" in second.text
    assert (await harness.server_status(user_id))["monthlyUsd"] == 2


async def test_the_dev_page_cannot_be_reused_after_the_callback(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    url = await lite.consent_url(token)
    await lite.browser.get(url, follow_redirects=True)
    again = await lite.browser.get(url)
    assert again.status_code == 402 and refused_link_page(again) == "grant_invalid"


async def test_an_unknown_state_is_refused(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    await lite.consent_url(token)  # a real pending state exists, and is not the one sent
    for state in ("unknown-state", "x" * 300):
        response = await lite.browser.get("/callback", params={"code": "whatever", "state": state})
        assert response.status_code == 400
        result = callback_result(response)
        assert result["error"]["code"] == "grant_invalid"
        assert "unknown" in result["error"]["message"]
        assert result["status"]["connected"] is False
    empty = await lite.browser.get("/callback", params={"code": "whatever", "state": ""})
    assert empty.status_code == 400 and callback_result(empty)["error"]["code"] == "invalid_request"
    await _not_connected(lite, user_id)


async def test_a_state_of_another_app_is_refused(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    async with (
        running(make_embed(keys, sqlite_url)) as first,
        running(make_embed(new_key_pair(), sqlite_url)) as second,
    ):
        token = await first.session(user_id)
        location = await _callback_location(first, await first.consent_url(token))
        # The other app (same database) gets the first app's callback, with the same browser cookie.
        second.browser.cookies.set(BROWSER_COOKIE, first.browser.cookies[BROWSER_COOKIE])
        stolen = await second.browser.get(location.replace(first.base_url, second.base_url))
        assert stolen.status_code == 400
        assert callback_result(stolen)["error"]["code"] == "grant_invalid"
        await _not_connected(second, user_id)
        # The right app can still finish it.
        finished = await first.browser.get(location)
        assert callback_result(finished)["status"]["connected"] is True


# -- browser binding ------------------------------------------------------------------------------


async def test_a_callback_in_another_browser_is_refused_and_the_state_survives(harness: Harness, user_id: str) -> None:
    token = await harness.session(user_id)
    location = await _callback_location(harness, await harness.consent_url(token))
    async with harness.new_browser() as stranger:
        no_cookie = await stranger.get(location)
        assert no_cookie.status_code == 400
        result = callback_result(no_cookie)
        assert result["error"]["code"] == "grant_invalid"
        assert "another browser" in result["error"]["message"]
        stranger.cookies.set(BROWSER_COOKIE, "not-the-right-browser")
        other_cookie = await stranger.get(location)
        assert callback_result(other_cookie)["error"]["code"] == "grant_invalid"
    await _not_connected(harness, user_id)
    # The browser that started the flow can still finish it.
    finished = await harness.browser.get(location)
    assert finished.status_code == 200
    assert callback_result(finished)["status"]["connected"] is True


async def test_a_forwarded_consent_link_cannot_attach_a_budget(lite: Harness, user_id: str) -> None:
    # The victim opens a link the attacker started: the dev page approves, but the callback is refused.
    token = await lite.session(user_id)
    url = await lite.consent_url(token)
    async with lite.new_browser(follow_redirects=True) as victim:
        page = await victim.get(url)
        assert page.status_code == 400
        assert callback_result(page)["error"]["code"] == "grant_invalid"
    await _not_connected(lite, user_id)


# -- expiry --------------------------------------------------------------------------------------


async def test_an_expired_state_is_refused(lite: Harness, user_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token = await lite.session(user_id)
    real_now = time.time()
    with monkeypatch.context() as patch:
        # Started eleven minutes ago: the ten-minute state is over.
        patch.setattr("wattfare_embed.consent_flow.time", SimpleNamespace(time=lambda: real_now - 660))
        url = await lite.consent_url(token)
    state = _query(url)["state"]
    page = await lite.browser.get(url)
    assert page.status_code == 402 and refused_link_page(page) == "grant_invalid"
    pending = await lite.embed.store.find_consent_request(state)
    assert pending is not None and pending.expires_at < real_now
    # Even with a valid code for it, the callback refuses the expired state.
    code = lite.embed.consent.issue_code(  # type: ignore[attr-defined]
        state, s256_challenge(pending.verifier), 5_000_000, lite.embed.authority_context()
    )
    callback = await lite.browser.get("/callback", params={"code": code, "state": state})
    assert callback.status_code == 400
    assert "expired" in callback_result(callback)["error"]["message"]
    await _not_connected(lite, user_id)


async def test_an_expired_request_written_to_the_store_is_refused(harness: Harness, user_id: str) -> None:
    await harness.embed.startup()
    now = int(time.time())
    browser_id, verifier, state = "browser-123", new_verifier(), "expired-state-" + user_id
    await harness.embed.store.create_consent_request(
        ConsentRequest(
            state=state,
            app_id=harness.keys.app_id,
            app_user_id=user_id,
            authority="dev",
            verifier=verifier,
            requested_cap=5_000_000,
            return_to="/",
            mode="popup",
            redirect_uri=f"{harness.base_url}{MOUNT}/callback",
            browser_hash=browser_hash(harness.keys.app_id, browser_id),
            created_at=now - 700,
            expires_at=now - 100,
        )
    )
    harness.browser.cookies.set(BROWSER_COOKIE, browser_id)
    code = harness.embed.consent.issue_code(  # type: ignore[attr-defined]
        state, s256_challenge(verifier), 5_000_000, harness.embed.authority_context()
    )
    response = await harness.browser.get("/callback", params={"code": code, "state": state})
    assert response.status_code == 400
    assert "expired" in callback_result(response)["error"]["message"]
    await _not_connected(harness, user_id)


# -- forged codes -----------------------------------------------------------------------------------


async def test_a_tampered_dev_code_ends_not_connected(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    location = await _callback_location(lite, await lite.consent_url(token, monthlyUsd=5))
    query = _query(location)
    claims = jwt.decode(query["code"], options={"verify_signature": False})
    header, _, signature = query["code"].split(".")
    claims["cap"] = 1_000_000_000  # ask for $1000 instead of $5
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await lite.browser.get(
        "/callback", params={"code": f"{header}.{payload}.{signature}", "state": query["state"]}
    )
    assert response.status_code == 400
    result = callback_result(response)
    assert result["error"]["code"] == "grant_invalid"
    assert result["status"]["connected"] is False
    await _not_connected(lite, user_id)


async def test_a_code_for_another_pkce_challenge_ends_not_connected(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    state = _query(await lite.consent_url(token))["state"]
    # Correctly signed, but issued for a verifier this consent request does not hold.
    code = lite.embed.consent.issue_code(  # type: ignore[attr-defined]
        state, s256_challenge(new_verifier()), 5_000_000, lite.embed.authority_context()
    )
    response = await lite.browser.get("/callback", params={"code": code, "state": state})
    assert response.status_code == 400
    assert "does not match" in callback_result(response)["error"]["message"]
    await _not_connected(lite, user_id)


async def test_a_code_swapped_between_two_flows_is_refused(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    first = _query(await _callback_location(lite, await lite.consent_url(token, monthlyUsd=5)))
    second = _query(await _callback_location(lite, await lite.consent_url(token, monthlyUsd=9)))
    swapped = await lite.browser.get("/callback", params={"code": first["code"], "state": second["state"]})
    assert callback_result(swapped)["error"]["code"] == "grant_invalid"
    await _not_connected(lite, user_id)


async def test_a_code_signed_by_another_app_is_refused(lite: Harness, user_id: str, sqlite_url: str) -> None:
    other = make_embed(new_key_pair(), sqlite_url)
    token = await lite.session(user_id)
    state = _query(await lite.consent_url(token))["state"]
    pending = await lite.embed.store.find_consent_request(state)
    assert pending is not None
    async with other:
        code = other.consent.issue_code(  # type: ignore[attr-defined]
            state, s256_challenge(pending.verifier), 5_000_000, other.authority_context()
        )
    response = await lite.browser.get("/callback", params={"code": code, "state": state})
    assert callback_result(response)["error"]["code"] == "grant_invalid"
    await _not_connected(lite, user_id)


async def test_a_callback_without_code_or_error_is_not_connected(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    state = _query(await lite.consent_url(token))["state"]
    response = await lite.browser.get("/callback", params={"state": state})
    assert callback_result(response)["status"]["connected"] is False
    await _not_connected(lite, user_id)
    missing_state = await lite.browser.get("/callback", params={"code": "abc"})
    assert missing_state.status_code == 400
    assert callback_result(missing_state)["error"]["code"] == "invalid_request"


# -- redirect mode and GET /connect ---------------------------------------------------------------------


async def test_redirect_mode_returns_to_the_app_with_connected(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    url = await lite.consent_url(token, mode="redirect", returnTo="/settings?tab=ai", monthlyUsd=4)
    location = await _callback_location(lite, url)
    back = await lite.browser.get(location)
    assert back.status_code == 303
    assert back.headers["location"] == "/settings?tab=ai&wattfare=connected"
    landed = await lite.browser.get(lite.base_url + back.headers["location"])
    assert landed.text == "settings tab=ai&wattfare=connected"
    assert (await lite.server_status(user_id))["monthlyUsd"] == 4


async def test_redirect_mode_denied_returns_with_denied(manual: Harness, user_id: str) -> None:
    token = await manual.session(user_id)
    url = await manual.consent_url(token, mode="redirect", returnTo="/settings")
    landed = await _decide(manual, url, "deny")
    assert landed.url.path == "/settings"
    assert landed.text == "settings wattfare=denied"
    await _not_connected(manual, user_id)


async def test_redirect_mode_failure_shows_the_page_instead(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    location = await _callback_location(lite, await lite.consent_url(token, mode="redirect", returnTo="/settings"))
    query = _query(location)
    bad = await lite.browser.get("/callback", params={"code": query["code"] + "x", "state": query["state"]})
    assert bad.status_code == 400
    result = callback_result(bad)
    # The error stays on screen; its link back tells the app what happened.
    assert result["error"]["code"] == "grant_invalid" and result["returnTo"] == "/settings?wattfare=error"
    assert result["navigate"] is False


async def test_an_unknown_mode_is_invalid_request(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    response = await lite.browser.post("/api/v1/consent", json={"mode": "iframe"}, headers=bearer(token))
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert await lite.count_consent_requests() == 0


async def test_get_connect_redirects_the_signed_in_user_through_consent(harness: Harness, user_id: str) -> None:
    harness.browser.cookies.set(LOGIN_COOKIE, user_id)
    response = await harness.browser.get("/connect", params={"monthlyUsd": "6", "returnTo": "/settings"})
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{harness.base_url}{MOUNT}/dev/consent?state=")
    assert BROWSER_COOKIE in response.cookies
    landed = await harness.browser.get(response.headers["location"], follow_redirects=True)
    assert str(landed.url) == f"{harness.base_url}/settings?wattfare=connected"
    assert [hop.status_code for hop in landed.history] == [303, 303]
    status = await harness.server_status(user_id)
    assert status["connected"] is True and status["monthlyUsd"] == 6


async def test_get_connect_with_an_async_resolver_and_defaults(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    async def resolve(request: Any) -> str | None:
        return request.cookies.get(LOGIN_COOKIE)

    async with running(make_embed(keys, sqlite_url, resolve_user=resolve, default_monthly_usd=3)) as harness:
        harness.browser.cookies.set(LOGIN_COOKIE, user_id)
        landed = await harness.browser.get("/connect", follow_redirects=True)
        assert str(landed.url) == f"{harness.base_url}/?wattfare=connected"
        assert (await harness.server_status(user_id))["monthlyUsd"] == 3


async def test_get_connect_without_a_signed_in_user_is_401(lite: Harness) -> None:
    response = await lite.browser.get("/connect", params={"returnTo": "/settings"})
    assert response.status_code == 401 and error_code(response) == "auth"
    assert await lite.count_consent_requests() == 0


async def test_get_connect_from_a_link_on_another_site_starts_nothing(lite: Harness, user_id: str) -> None:
    lite.browser.cookies.set(LOGIN_COOKIE, user_id)  # signed in, and lured by a link elsewhere
    response = await lite.browser.get(
        "/connect", params={"monthlyUsd": "1000"}, headers={"sec-fetch-site": "cross-site"}
    )
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert await lite.count_consent_requests() == 0
    same_site = await lite.browser.get("/connect", headers={"sec-fetch-site": "same-origin"})
    assert same_site.status_code == 302


async def test_get_connect_refuses_a_bad_cap(lite: Harness, user_id: str) -> None:
    lite.browser.cookies.set(LOGIN_COOKIE, user_id)
    for cap in ("-1", "0", "abc", "5000", "nan"):
        response = await lite.browser.get("/connect", params={"monthlyUsd": cap})
        assert response.status_code == 400 and error_code(response) == "invalid_request", cap
    assert await lite.count_consent_requests() == 0


OFF_SITE = [
    "//evil.example",
    "//evil.example/path",
    "https://evil.example",
    "http://evil.example/settings",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    " /settings",
    "/settings ",
    "/set tings",
    "/settings\n",
    "/settings\r\nSet-Cookie: x=1",
    "/\tevil.example",
    "/\x00evil",
    "/\x7fevil",
    "settings",
    "evil.example",
    "https:/evil.example",
    "/" + "x" * 2048,
]


async def test_off_site_return_to_is_refused_by_connect(lite: Harness, user_id: str) -> None:
    lite.browser.cookies.set(LOGIN_COOKIE, user_id)
    for return_to in OFF_SITE:
        response = await lite.browser.get("/connect", params={"returnTo": return_to})
        assert response.status_code == 400, return_to
        assert error_code(response) == "invalid_request"
        assert "location" not in response.headers
        assert BROWSER_COOKIE not in response.cookies
    assert await lite.count_consent_requests() == 0


async def test_off_site_return_to_is_refused_by_the_consent_api(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    for return_to in [*OFF_SITE, 42, ["/settings"], {"path": "/"}]:
        for path, body in [
            ("/api/v1/consent", {"returnTo": return_to, "mode": "redirect"}),
            ("/api/v1/connections", {"returnTo": return_to, "monthlyUsd": 50}),
        ]:
            response = await lite.browser.post(path, json=body, headers=bearer(token))
            assert response.status_code == 400, (path, return_to)
            assert error_code(response) == "invalid_request"
    assert await lite.count_consent_requests() == 0
    await _not_connected(lite, user_id)


async def test_same_site_return_paths_are_accepted(lite: Harness, user_id: str) -> None:
    lite.browser.cookies.set(LOGIN_COOKIE, user_id)
    for return_to in ("/", "/settings", "/a/b?c=d&e=f", "/settings#budget", "/caf%C3%A9", "/a:b"):
        response = await lite.browser.get("/connect", params={"returnTo": return_to})
        assert response.status_code == 302, return_to
        pending = await lite.embed.store.find_consent_request(_query(response.headers["location"])["state"])
        assert pending is not None and pending.return_to == return_to


async def test_the_result_goes_in_the_query_even_with_a_fragment(lite: Harness, user_id: str) -> None:
    lite.browser.cookies.set(LOGIN_COOKIE, user_id)
    for return_to, expected in [
        ("/settings#budget", "/settings?wattfare=connected#budget"),
        ("/settings?tab=ai#budget", "/settings?tab=ai&wattfare=connected#budget"),
        ("/settings#a?b", "/settings?wattfare=connected#a?b"),
    ]:
        start = await lite.browser.get("/connect", params={"returnTo": return_to})
        location = await _callback_location(lite, start.headers["location"])
        back = await lite.browser.get(location)
        assert back.status_code == 303
        assert back.headers["location"] == expected


# -- reconnecting ----------------------------------------------------------------------------------------


async def test_reconnecting_keeps_this_months_spend(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=10)
    store, now = lite.embed.store, int(time.time())
    held = await store.reserve(ReservationRequest(lite.keys.app_id, user_id, 3_000_000, 3_000_000, "chat", "m"), now)
    assert not isinstance(held, str)
    await store.settle(held.ledger_id, 3_000_000, "reported", now)
    again = await lite.connect(user_id, monthly_usd=5)
    assert (again["status"]["monthlyUsd"], again["status"]["spentUsd"], again["status"]["remainingUsd"]) == (5, 3, 2)
    record = await store.get_connection(lite.keys.app_id, user_id, now)
    assert record is not None and record.grant_id is not None and record.grant_id.startswith("dev_")
