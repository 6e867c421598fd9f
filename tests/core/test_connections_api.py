"""`/api/v1/connections` (session token) and `/api/v1/status` (secret key): read, lower, raise, revoke."""

from __future__ import annotations

import time
from typing import Any

from wattfare_embed import AppKeys, DevConsent
from wattfare_embed.consent import AuthorityContext
from wattfare_embed.periods import period_bounds, period_of
from wattfare_embed.store import ReservationRequest

from .conftest import Harness, bearer, callback_result, error_code, make_embed, running

STATUS_FIELDS = {
    "connected",
    "status",
    "appUserId",
    "monthlyUsd",
    "spentUsd",
    "heldUsd",
    "remainingUsd",
    "availableUsd",
    "periodStart",
    "periodEnd",
    "authority",
}


async def _spend(harness: Harness, user: str, micros: int) -> None:
    """Charge a user through the store, as the proxy would."""
    store = harness.embed.store
    now = int(time.time())
    held = await store.reserve(
        ReservationRequest(harness.keys.app_id, user, wanted=micros, minimum=micros, kind="chat", model="m"), now
    )
    assert not isinstance(held, str), held
    assert await store.settle(held.ledger_id, micros, "reported", now)


async def test_not_connected_is_a_200_with_connected_false(harness: Harness, user_id: str) -> None:
    token = await harness.session(user_id)
    response = await harness.browser.get("/api/v1/connections", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_FIELDS
    start, end = period_bounds(period_of(time.time()))
    assert body == {
        "connected": False,
        "status": "not_connected",
        "appUserId": user_id,
        "monthlyUsd": 0,
        "spentUsd": 0,
        "heldUsd": 0,
        "remainingUsd": 0,
        "availableUsd": 0,
        "periodStart": start.isoformat().replace("+00:00", "Z"),
        "periodEnd": end.isoformat().replace("+00:00", "Z"),
        "authority": None,
    }
    assert response.headers["cache-control"] == "no-store"
    assert await harness.server_status(user_id) == body


async def test_a_connected_user_sees_cap_spend_and_remaining(harness: Harness, user_id: str) -> None:
    await harness.connect(user_id, monthly_usd=10)
    await _spend(harness, user_id, 3_600_000)
    token = await harness.session(user_id)
    body = (await harness.browser.get("/api/v1/connections", headers=bearer(token))).json()
    assert body["connected"] is True and body["status"] == "active" and body["authority"] == "dev"
    assert (body["monthlyUsd"], body["spentUsd"], body["remainingUsd"]) == (10, 3.6, 6.4)
    assert await harness.server_status(user_id) == body


async def test_each_token_sees_only_its_own_user(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=10)
    other = await lite.session("someone-else")
    body = (await lite.browser.get("/api/v1/connections", headers=bearer(other))).json()
    assert body["appUserId"] == "someone-else" and body["connected"] is False


async def test_lowering_the_cap_applies_at_once(harness: Harness, user_id: str) -> None:
    await harness.connect(user_id, monthly_usd=10)
    token = await harness.session(user_id)
    response = await harness.browser.post("/api/v1/connections", json={"monthlyUsd": 4.25}, headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert "consentUrl" not in body
    assert body["monthlyUsd"] == 4.25 and body["connected"] is True
    assert (await harness.server_status(user_id))["monthlyUsd"] == 4.25
    # The same cap again is a no-op "lowering", not a consent round trip.
    again = await harness.browser.post("/api/v1/connections", json={"monthlyUsd": "4.25"}, headers=bearer(token))
    assert again.status_code == 200 and "consentUrl" not in again.json()


async def test_an_update_without_a_cap_changes_nothing_for_a_connected_user(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=50)
    token = await lite.session(user_id)  # the session's own requested limit must not lower the cap
    response = await lite.browser.post("/api/v1/connections", json={}, headers=bearer(token))
    assert response.status_code == 200
    assert "consentUrl" not in response.json() and response.json()["monthlyUsd"] == 50
    assert (await lite.server_status(user_id))["monthlyUsd"] == 50


async def test_an_off_site_return_path_is_refused_even_when_lowering(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=10)
    token = await lite.session(user_id)
    body = {"monthlyUsd": 5, "returnTo": "//evil.example"}
    response = await lite.browser.post("/api/v1/connections", json=body, headers=bearer(token))
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert (await lite.server_status(user_id))["monthlyUsd"] == 10


async def test_lowering_below_the_spend_leaves_nothing_remaining(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=10)
    await _spend(lite, user_id, 5_000_000)
    token = await lite.session(user_id)
    body = (await lite.browser.post("/api/v1/connections", json={"monthlyUsd": 2}, headers=bearer(token))).json()
    assert (body["monthlyUsd"], body["spentUsd"], body["remainingUsd"]) == (2, 5, 0)


async def test_raising_the_cap_answers_a_consent_url_and_changes_nothing_yet(harness: Harness, user_id: str) -> None:
    await harness.connect(user_id, monthly_usd=5)
    token = await harness.session(user_id)
    response = await harness.browser.post("/api/v1/connections", json={"monthlyUsd": 25}, headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {*STATUS_FIELDS, "consentUrl"}
    assert body["monthlyUsd"] == 5 and body["connected"] is True
    assert body["consentUrl"].startswith(harness.base_url + "/wattfare/dev/consent?state=")
    assert "wattfare_browser" in response.cookies
    assert (await harness.server_status(user_id))["monthlyUsd"] == 5
    # Following the consent URL (the user approves) is what raises it.
    page = await harness.browser.get(body["consentUrl"], follow_redirects=True)
    assert callback_result(page)["status"]["monthlyUsd"] == 25
    assert (await harness.server_status(user_id))["monthlyUsd"] == 25


async def test_raising_keeps_this_months_spend(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=5)
    await _spend(lite, user_id, 4_000_000)
    await lite.connect(user_id, monthly_usd=20)
    status = await lite.server_status(user_id)
    assert (status["monthlyUsd"], status["spentUsd"], status["remainingUsd"]) == (20, 4, 16)


async def test_setting_a_cap_when_not_connected_answers_a_consent_url(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    response = await lite.browser.post("/api/v1/connections", json={"monthlyUsd": 8}, headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["connected"] is False and "consentUrl" in response.json()
    page = await lite.browser.get(response.json()["consentUrl"], follow_redirects=True)
    assert callback_result(page)["status"]["monthlyUsd"] == 8


BAD_CAPS: list[Any] = [-1, 0, "0", "-3", "abc", "", True, False, [5], {"usd": 5}, 1000.01, "1e9", "NaN", "Infinity"]


async def test_bad_caps_are_invalid_request_and_change_nothing(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=10)
    before = await lite.server_status(user_id)
    token = await lite.session(user_id)
    for cap in BAD_CAPS:
        response = await lite.browser.post("/api/v1/connections", json={"monthlyUsd": cap}, headers=bearer(token))
        assert response.status_code == 400, (cap, response.text)
        assert error_code(response) == "invalid_request"
    assert await lite.server_status(user_id) == before
    # null is what JSON.stringify({monthlyUsd: NaN}) sends: a client bug, told as such.
    null = await lite.browser.post("/api/v1/connections", json={"monthlyUsd": None}, headers=bearer(token))
    assert null.status_code == 400 and "null" in null.json()["error"]["message"]
    # Leaving it out asks for nothing: not an error, and nothing to lower either.
    nothing = await lite.browser.post("/api/v1/connections", json={}, headers=bearer(token))
    assert nothing.status_code == 200 and "consentUrl" not in nothing.json()
    assert await lite.server_status(user_id) == before


async def test_bad_caps_change_nothing_on_both_databases(harness: Harness, user_id: str) -> None:
    await harness.connect(user_id, monthly_usd=10)
    token = await harness.session(user_id)
    for cap in (-5, 0, "ten", True, 5000):
        response = await harness.browser.post("/api/v1/connections", json={"monthlyUsd": cap}, headers=bearer(token))
        assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert (await harness.server_status(user_id))["monthlyUsd"] == 10
    assert await harness.count_consent_requests() == 1


async def test_the_configured_maximum_bounds_caps(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    async with running(make_embed(keys, sqlite_url, max_monthly_usd=50, default_monthly_usd=5)) as harness:
        token = await harness.session(user_id)
        over = await harness.browser.post("/api/v1/consent", json={"monthlyUsd": 50.01}, headers=bearer(token))
        assert over.status_code == 400 and "at most 50" in over.json()["error"]["message"]
        at_max = await harness.connect(user_id, monthly_usd=50)
        assert at_max["status"]["monthlyUsd"] == 50
        default = await harness.connect("default-user", monthly_usd=None)
        assert default["status"]["monthlyUsd"] == 5


async def test_delete_revokes_at_once(harness: Harness, user_id: str) -> None:
    await harness.connect(user_id, monthly_usd=10)
    await _spend(harness, user_id, 1_000_000)
    token = await harness.session(user_id)
    response = await harness.browser.delete("/api/v1/connections", headers=bearer(token))
    assert response.status_code == 204 and response.content == b""
    status = await harness.server_status(user_id)
    assert status["connected"] is False and status["status"] == "revoked"
    assert status["remainingUsd"] == 0 and status["spentUsd"] == 1
    record = await harness.embed.store.get_connection(harness.keys.app_id, user_id, int(time.time()))
    assert record is not None and record.sealed_credential is None
    # No more money can move.
    refused = await harness.embed.store.reserve(
        ReservationRequest(harness.keys.app_id, user_id, wanted=1, minimum=1, kind="chat", model="m"),
        int(time.time()),
    )
    assert refused == "revoked"
    # Lowering a revoked connection is not possible: it answers a consent URL to reconnect.
    lowered = await harness.browser.post("/api/v1/connections", json={"monthlyUsd": 1}, headers=bearer(token))
    assert lowered.json()["status"] == "revoked" and "consentUrl" in lowered.json()


async def test_delete_when_not_connected_is_still_204(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    response = await lite.browser.delete("/api/v1/connections", headers=bearer(token))
    assert response.status_code == 204
    assert (await lite.server_status(user_id))["status"] == "not_connected"


async def test_delete_asks_the_authority_to_revoke_the_grant(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    revoked: list[tuple[str | None, str | None]] = []

    class RecordingConsent(DevConsent):
        async def revoke(self, credential: str | None, grant_id: str | None, context: AuthorityContext) -> None:
            revoked.append((credential, grant_id))

    async with running(make_embed(keys, sqlite_url, consent=RecordingConsent())) as harness:
        await harness.connect(user_id)
        record = await harness.embed.store.get_connection(keys.app_id, user_id, int(time.time()))
        assert record is not None
        credential = harness.embed.open_credential(record)
        token = await harness.session(user_id)
        assert (await harness.browser.delete("/api/v1/connections", headers=bearer(token))).status_code == 204
        assert revoked == [(credential, record.grant_id)]
        # Deleting again does not ask again: there is nothing left to revoke.
        assert (await harness.browser.delete("/api/v1/connections", headers=bearer(token))).status_code == 204
        assert len(revoked) == 1


async def test_delete_succeeds_even_when_the_authority_fails(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    class FailingConsent(DevConsent):
        async def revoke(self, credential: str | None, grant_id: str | None, context: AuthorityContext) -> None:
            raise ConnectionError("the authority is down")

    async with running(make_embed(keys, sqlite_url, consent=FailingConsent())) as harness:
        await harness.connect(user_id)
        token = await harness.session(user_id)
        assert (await harness.browser.delete("/api/v1/connections", headers=bearer(token))).status_code == 204
        assert (await harness.server_status(user_id))["status"] == "revoked"


async def test_reconnecting_after_revoke_keeps_this_months_spend(harness: Harness, user_id: str) -> None:
    await harness.connect(user_id, monthly_usd=10)
    await _spend(harness, user_id, 2_500_000)
    token = await harness.session(user_id)
    await harness.browser.delete("/api/v1/connections", headers=bearer(token))
    result = await harness.connect(user_id, monthly_usd=10)
    assert result["status"]["connected"] is True
    assert (result["status"]["spentUsd"], result["status"]["remainingUsd"]) == (2.5, 7.5)


async def test_a_secret_key_where_a_session_token_belongs_is_401(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=10)
    secret = lite.server_auth
    for method, path, body in [
        ("GET", "/api/v1/connections", None),
        ("POST", "/api/v1/connections", {"monthlyUsd": 1}),
        ("DELETE", "/api/v1/connections", None),
        ("POST", "/api/v1/consent", {}),
    ]:
        response = await lite.browser.request(method, path, json=body, headers=secret)
        assert response.status_code == 401, (method, path)
        assert error_code(response) == "auth"
        assert "never the secret key" in response.json()["error"]["message"]
    assert (await lite.server_status(user_id))["monthlyUsd"] == 10
    assert (await lite.server_status(user_id))["connected"] is True


async def test_a_session_token_where_the_secret_key_belongs_is_401(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    response = await lite.browser.get("/api/v1/status", params={"appUserId": user_id}, headers=bearer(token))
    assert response.status_code == 401 and error_code(response) == "auth"
    nothing = await lite.browser.get("/api/v1/status", params={"appUserId": user_id})
    assert nothing.status_code == 401 and error_code(nothing) == "auth"


async def test_status_needs_a_valid_app_user_id(lite: Harness) -> None:
    for query in ({}, {"appUserId": ""}, {"appUserId": "u" * 256}):
        response = await lite.browser.get("/api/v1/status", params=query, headers=lite.server_auth)
        assert response.status_code == 400, query
        assert error_code(response) == "invalid_request"


async def test_connection_updates_refuse_bad_json(lite: Harness, user_id: str) -> None:
    await lite.connect(user_id, monthly_usd=10)
    token = await lite.session(user_id)
    for content, content_type in [
        (b"{", "application/json"),
        (b'{"monthlyUsd": 1}', "text/plain"),
        (b"[1]", "application/json"),
    ]:
        response = await lite.browser.post(
            "/api/v1/connections", content=content, headers={**bearer(token), "content-type": content_type}
        )
        assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert (await lite.server_status(user_id))["monthlyUsd"] == 10
