"""`OpenRouterConsent` against the fake OpenRouter, each under its own uvicorn server: OAuth PKCE end to end."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from wattfare_embed import AppKeys, OpenRouterConsent, new_key_pair
from wattfare_embed.pkce import s256_challenge
from wattfare_embed.store.schema import connections
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import free_port, serve_in_loop

from .conftest import MOUNT, Harness, bearer, callback_result, local_client, make_embed, run_sql, running


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@dataclass
class OpenRouterSetup:
    fake: FakeOpenRouter
    fake_url: str
    app: Harness


@asynccontextmanager
async def openrouter_setup(keys: AppKeys, database_url: str) -> AsyncIterator[OpenRouterSetup]:
    """The fake under its own uvicorn server, and the host app whose embed points at it."""
    fake = FakeOpenRouter()
    async with serve_in_loop(fake) as fake_url:
        consent = OpenRouterConsent(auth_url=f"{fake_url}/auth", api_url=f"{fake_url}/api/v1")
        async with running(make_embed(keys, database_url, consent=consent)) as harness:
            yield OpenRouterSetup(fake, fake_url, harness)


@pytest.fixture
async def openrouter(keys: AppKeys, database_url: str) -> AsyncIterator[OpenRouterSetup]:
    """On both databases, for what the store keeps."""
    async with openrouter_setup(keys, database_url) as setup:
        yield setup


@pytest.fixture
async def openrouter_lite(keys: AppKeys, sqlite_url: str) -> AsyncIterator[OpenRouterSetup]:
    async with openrouter_setup(keys, sqlite_url) as setup:
        yield setup


async def _authorize_url(setup: OpenRouterSetup, user: str, **body: object) -> str:
    token = await setup.app.session(user)
    return await setup.app.consent_url(token, **body)


async def _code_and_state(setup: OpenRouterSetup, user: str, **body: object) -> dict[str, str]:
    """Let the fake approve, stopping before its redirect back to the app's callback."""
    approved = await setup.app.browser.get(await _authorize_url(setup, user, **body))
    assert approved.status_code == 302, approved.text
    location = approved.headers["location"]
    assert location.startswith(f"{setup.app.base_url}{MOUNT}/callback?")
    return _query(location)


async def _not_connected(harness: Harness, user: str) -> None:
    status = await harness.server_status(user)
    assert status["connected"] is False and status["status"] == "not_connected"


async def test_the_authorize_url_is_openrouters_pkce_url(openrouter_lite: OpenRouterSetup, user_id: str) -> None:
    url = await _authorize_url(openrouter_lite, user_id, monthlyUsd=15)
    assert url.startswith(f"{openrouter_lite.fake_url}/auth?")
    query = _query(url)
    assert set(query) == {"callback_url", "code_challenge", "code_challenge_method", "state"}
    assert query["callback_url"] == f"{openrouter_lite.app.base_url}{MOUNT}/callback"
    assert query["code_challenge_method"] == "S256"
    pending = await openrouter_lite.app.embed.store.find_consent_request(query["state"])
    assert pending is not None
    assert pending.app_user_id == user_id and pending.authority == "openrouter"
    assert pending.requested_cap == 15_000_000
    assert query["code_challenge"] == s256_challenge(pending.verifier)
    assert pending.verifier not in url


async def test_the_round_trip_stores_the_users_key_sealed(
    openrouter: OpenRouterSetup, user_id: str, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness = openrouter.app
    url = await _authorize_url(openrouter, user_id, monthlyUsd=15)
    page = await harness.browser.get(url, follow_redirects=True)
    assert page.status_code == 200
    assert [hop.status_code for hop in page.history] == [302]
    result = callback_result(page)
    assert result["error"] is None
    assert result["status"]["connected"] is True and result["status"]["authority"] == "openrouter"
    assert result["status"]["monthlyUsd"] == 15  # OpenRouter reports no cap: the requested one stands
    # The app exchanged the code itself, with the verifier it kept.
    [exchange] = [request for request in openrouter.fake.requests if request.path == "/api/v1/auth/keys"]
    assert exchange.method == "POST" and exchange.json["code_challenge_method"] == "S256"
    assert exchange.json["code"] == _query(str(page.url))["code"]
    record = await harness.embed.store.get_connection(harness.keys.app_id, user_id, int(time.time()))
    assert record is not None and record.grant_id is not None and record.grant_id.startswith("or_")
    raw_key = harness.embed.open_credential(record)
    assert raw_key is not None and raw_key.startswith("sk-or-v1-")
    issued = openrouter.fake.keys.find(raw_key)
    assert issued is not None and issued.via_oauth
    # The raw key is nowhere but in memory: not in any response, not in the database.
    token = await harness.session(user_id)
    responses = [
        page,
        await harness.browser.get("/api/v1/connections", headers=bearer(token)),
        await harness.browser.get("/api/v1/status", params={"appUserId": user_id}, headers=harness.server_auth),
    ]
    for response in responses:
        assert raw_key not in response.text
        assert raw_key not in str(response.headers)
    secret_part = raw_key.removeprefix("sk-or-v1-")
    assert secret_part not in caplog.text  # never logged
    rows = await run_sql(harness.embed, lambda db: db.execute(select(connections)).all())
    assert rows and all(secret_part not in str(tuple(row)) for row in rows)
    assert record.sealed_credential is not None and record.sealed_credential.startswith("v1.")
    if database_url.startswith("sqlite"):
        await harness.embed.shutdown()  # everything on disk: read the file (and any WAL left) as stored
        for path in tmp_path.glob("wattfare.db*"):
            assert secret_part.encode() not in path.read_bytes()


async def test_a_replayed_code_ends_not_connected(openrouter: OpenRouterSetup, user_id: str) -> None:
    harness = openrouter.app
    first = await _code_and_state(openrouter, user_id)
    connected = await harness.browser.get("/callback", params=first)
    assert callback_result(connected)["status"]["connected"] is True
    # The same code again, under a fresh state (the old one is spent): OpenRouter refuses it.
    second = await _code_and_state(openrouter, "second-user")
    replay = await harness.browser.get("/callback", params={"code": first["code"], "state": second["state"]})
    assert replay.status_code == 400
    result = callback_result(replay)
    assert result["error"]["code"] == "grant_invalid"
    assert result["status"]["connected"] is False
    await _not_connected(harness, "second-user")
    # And the spent state itself cannot be replayed either.
    again = await harness.browser.get("/callback", params=first)
    assert callback_result(again)["error"]["code"] == "grant_invalid"


async def test_a_code_with_another_flows_verifier_is_refused(openrouter_lite: OpenRouterSetup, user_id: str) -> None:
    harness = openrouter_lite.app
    mine = await _code_and_state(openrouter_lite, user_id)
    theirs = await _code_and_state(openrouter_lite, "other-user")
    # An attacker's code delivered into the victim's flow: the PKCE verifier does not match it.
    swapped = await harness.browser.get("/callback", params={"code": theirs["code"], "state": mine["state"]})
    assert callback_result(swapped)["error"]["code"] == "grant_invalid"
    await _not_connected(harness, user_id)
    # The refused code was not used up: its own flow still completes.
    finished = await harness.browser.get("/callback", params=theirs)
    assert callback_result(finished)["status"]["connected"] is True


async def test_an_expired_code_ends_not_connected(openrouter_lite: OpenRouterSetup, user_id: str) -> None:
    params = await _code_and_state(openrouter_lite, user_id)
    real_clock = openrouter_lite.fake.clock
    openrouter_lite.fake.clock = lambda: real_clock() + 601
    response = await openrouter_lite.app.browser.get("/callback", params=params)
    assert callback_result(response)["error"]["code"] == "grant_invalid"
    await _not_connected(openrouter_lite.app, user_id)


async def test_approving_and_denying_on_openrouters_page(openrouter_lite: OpenRouterSetup, user_id: str) -> None:
    harness, fake = openrouter_lite.app, openrouter_lite.fake
    fake.oauth_auto_approve = False
    url = await _authorize_url(openrouter_lite, user_id, monthlyUsd=8)
    page = await harness.browser.get(url)
    assert page.status_code == 200 and "wants to connect to your OpenRouter account" in page.text
    fields = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    async with local_client(cookies=harness.browser.cookies, follow_redirects=True) as browser:
        denied = await browser.post(f"{openrouter_lite.fake_url}/auth/decide", data={**fields, "decision": "deny"})
        assert denied.status_code == 200
        assert callback_result(denied)["status"]["connected"] is False
        assert "Not connected" in denied.text
        await _not_connected(harness, user_id)
        # OpenRouter sends no state with a denial, so the flow is still open: approving finishes it.
        approved = await browser.post(f"{openrouter_lite.fake_url}/auth/decide", data={**fields, "decision": "approve"})
        result = callback_result(approved)
        assert result["status"]["connected"] is True and result["status"]["monthlyUsd"] == 8


async def test_the_callback_in_another_browser_is_refused(openrouter_lite: OpenRouterSetup, user_id: str) -> None:
    params = await _code_and_state(openrouter_lite, user_id)
    async with openrouter_lite.app.new_browser() as stranger:
        refused = await stranger.get("/callback", params=params)
        assert "another browser" in callback_result(refused)["error"]["message"]
    await _not_connected(openrouter_lite.app, user_id)
    finished = await openrouter_lite.app.browser.get("/callback", params=params)
    assert callback_result(finished)["status"]["connected"] is True


async def test_openrouter_unreachable_ends_not_connected_with_an_upstream_error(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    fake = FakeOpenRouter()
    async with serve_in_loop(fake) as fake_url:
        # The approval page works, but the key exchange goes to a port nobody listens on.
        dead = f"http://127.0.0.1:{free_port()}/api/v1"
        consent = OpenRouterConsent(auth_url=f"{fake_url}/auth", api_url=dead)
        async with running(make_embed(keys, sqlite_url, consent=consent)) as harness:
            setup = OpenRouterSetup(fake, fake_url, harness)
            params = await _code_and_state(setup, user_id)
            response = await harness.browser.get("/callback", params=params)
            assert response.status_code == 400
            assert callback_result(response)["error"]["code"] == "upstream"
            await _not_connected(harness, user_id)


async def test_an_openrouter_server_error_is_an_upstream_error(openrouter_lite: OpenRouterSetup, user_id: str) -> None:
    params = await _code_and_state(openrouter_lite, user_id)
    openrouter_lite.fake.inject(status=500, path="/api/v1/auth/keys")
    response = await openrouter_lite.app.browser.get("/callback", params=params)
    assert callback_result(response)["error"]["code"] == "upstream"
    await _not_connected(openrouter_lite.app, user_id)


async def test_disconnecting_drops_the_key(openrouter_lite: OpenRouterSetup, user_id: str) -> None:
    harness = openrouter_lite.app
    await harness.browser.get(await _authorize_url(openrouter_lite, user_id), follow_redirects=True)
    token = await harness.session(user_id)
    assert (await harness.browser.delete("/api/v1/connections", headers=bearer(token))).status_code == 204
    record = await harness.embed.store.get_connection(harness.keys.app_id, user_id, int(time.time()))
    assert record is not None and record.sealed_credential is None
    assert (await harness.server_status(user_id))["status"] == "revoked"


def test_live_keys_work_with_openrouter_consent(sqlite_url: str) -> None:
    live = new_key_pair(live=True)
    embed = make_embed(live, sqlite_url, consent=OpenRouterConsent(api_url="https://openrouter.example/api/v1/"))
    assert embed.consent.name == "openrouter"
    assert embed.consent.api_url == "https://openrouter.example/api/v1"  # type: ignore[attr-defined]


async def test_openrouter_pkce_funds_a_one_time_grant_with_a_key_for_it_alone(
    openrouter_lite: OpenRouterSetup,
) -> None:
    from wattfare_embed.grants import grant_token_hash

    setup = openrouter_lite
    started = await setup.app.browser.post(
        "/api/v1/grants/consent",
        json={"publishableKey": setup.app.keys.publishable_key, "requests": 2, "maxUsd": 0.25},
    )
    assert started.status_code == 200, started.text
    page = await setup.app.browser.get(started.json()["url"], follow_redirects=True)

    grant = callback_result(page)["grant"]
    embed = setup.app.embed
    record = await embed.store.find_grant(embed.keys.app_id, grant_token_hash(grant["grantToken"]))
    assert record is not None and (record.requests_allowed, record.max_cost) == (2, 250_000)
    # The PKCE exchange minted a key of the visitor's for this grant alone.
    key = setup.fake.keys.find(embed.open_credential_of_grant(record) or "")
    assert key is not None and key.via_oauth
    assert await embed.store.get_connection(embed.keys.app_id, "", 0) is None
    status = await embed.grant(grant["grantToken"]).status()
    assert (status.active, status.requests_left) == (True, 2)
