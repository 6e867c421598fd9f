"""`POST /session` (the app's own login) and `POST /api/v1/sessions` (the app's server, secret key)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
from starlette.requests import Request

from wattfare_embed import AppKeys, new_key_pair

from .conftest import Harness, bearer, error_code, make_embed, running


def _user_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def test_session_for_the_signed_in_user_with_a_sync_resolver(lite: Harness, user_id: str) -> None:
    lite.browser.cookies.set("app_user", user_id)
    response = await lite.browser.post("/session")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    assert abs(body["expiresAt"] - (time.time() + 600)) < 5
    assert response.headers["cache-control"] == "no-store"
    status = await lite.browser.get("/api/v1/connections", headers=bearer(body["token"]))
    assert status.status_code == 200
    assert status.json()["appUserId"] == user_id


async def test_session_for_the_signed_in_user_with_an_async_resolver(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    seen: list[str] = []

    async def resolve(request: Request) -> str | None:
        await asyncio.sleep(0)
        seen.append(request.url.path)
        return request.headers.get("x-app-user")

    async with running(make_embed(keys, sqlite_url, resolve_user=resolve)) as harness:
        response = await harness.browser.post("/session", headers={"x-app-user": user_id})
        assert response.status_code == 200
        assert _user_of(response.json()["token"]) == user_id
        assert seen == ["/wattfare/session"]
        nobody = await harness.browser.post("/session")
        assert nobody.status_code == 401 and error_code(nobody) == "auth"


async def test_session_without_a_signed_in_user_is_401(lite: Harness) -> None:
    response = await lite.browser.post("/session")
    assert response.status_code == 401
    assert error_code(response) == "auth"


async def test_session_when_the_resolver_finds_nobody_is_401(keys: AppKeys, sqlite_url: str) -> None:
    answers: list[Any] = [None, ""]
    async with running(make_embed(keys, sqlite_url, resolve_user=lambda request: answers.pop(0))) as harness:
        for _ in range(2):
            response = await harness.browser.post("/session")
            assert response.status_code == 401 and error_code(response) == "auth"
        assert answers == []


async def test_session_without_a_resolver_configured_is_401(keys: AppKeys, sqlite_url: str) -> None:
    async with running(make_embed(keys, sqlite_url, resolve_user=None)) as harness:
        response = await harness.browser.post("/session")
        assert response.status_code == 401 and error_code(response) == "auth"


async def test_session_only_answers_post(lite: Harness, user_id: str) -> None:
    lite.browser.cookies.set("app_user", user_id)
    response = await lite.browser.get("/session")
    assert response.status_code == 405
    assert error_code(response) == "invalid_request"


async def test_server_mints_a_session_with_the_secret_key(lite: Harness, user_id: str) -> None:
    response = await lite.browser.post(
        "/api/v1/sessions",
        json={"appUserId": user_id, "requestLimit": {"monthlyUsd": "12.50"}},
        headers=lite.server_auth,
    )
    assert response.status_code == 200
    token = response.json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == user_id and claims["lim"] == 12_500_000
    status = await lite.browser.get("/api/v1/connections", headers=bearer(token))
    assert status.status_code == 200 and status.json()["connected"] is False


async def test_the_requested_limit_becomes_the_consent_default(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id, monthly_usd=3)
    page = await lite.browser.get(await lite.consent_url(token), follow_redirects=True)
    assert page.status_code == 200, page.text
    status = await lite.server_status(user_id)
    assert status["connected"] is True and status["monthlyUsd"] == 3


async def test_a_session_token_where_the_secret_key_belongs_is_401(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    response = await lite.browser.post("/api/v1/sessions", json={"appUserId": "victim"}, headers=bearer(token))
    assert response.status_code == 401
    assert error_code(response) == "auth"
    assert "secret key" in response.json()["error"]["message"]


async def test_sessions_refuse_missing_or_wrong_credentials(lite: Harness) -> None:
    for authorization in (None, "Bearer sk_test_nope_" + "x" * 40, "Basic c2VjcmV0", "Bearer pk_test_abc"):
        headers = {} if authorization is None else {"authorization": authorization}
        response = await lite.browser.post("/api/v1/sessions", json={"appUserId": "u"}, headers=headers)
        assert response.status_code == 401, authorization
        assert error_code(response) == "auth"


async def test_sessions_refuse_another_apps_secret_and_a_near_miss(lite: Harness) -> None:
    for secret in (
        new_key_pair().secret_key,
        lite.keys.secret_key[:-1] + ("0" if lite.keys.secret_key[-1] != "0" else "1"),
    ):
        response = await lite.browser.post("/api/v1/sessions", json={"appUserId": "u"}, headers=bearer(secret))
        assert response.status_code == 401 and error_code(response) == "auth"


BAD_BODIES: list[dict[str, Any]] = [
    {},
    {"appUserId": ""},
    {"appUserId": None},
    {"appUserId": 42},
    {"appUserId": ["u"]},
    {"appUserId": "u" * 256},
    {"app_user_id": "u"},
    {"appUserId": "u", "requestLimit": 5},
    {"appUserId": "u", "requestLimit": {"monthlyUsd": -1}},
    {"appUserId": "u", "requestLimit": {"monthlyUsd": 0}},
    {"appUserId": "u", "requestLimit": {"monthlyUsd": "lots"}},
    {"appUserId": "u", "requestLimit": {"monthlyUsd": True}},
    {"appUserId": "u", "requestLimit": {"monthlyUsd": 1001}},
    {"appUserId": "u", "requestLimit": {}},
]


async def test_sessions_answer_bad_bodies_with_invalid_request(lite: Harness) -> None:
    for body in BAD_BODIES:
        response = await lite.browser.post("/api/v1/sessions", json=body, headers=lite.server_auth)
        assert response.status_code == 400, (body, response.text)
        assert error_code(response) == "invalid_request"


async def test_a_user_id_of_255_characters_is_fine(lite: Harness) -> None:
    user = "u" * 255
    token = await lite.session(user)
    assert _user_of(token) == user


MALFORMED: list[tuple[bytes, str]] = [
    (b'{"appUserId": "u"', "application/json"),
    (b"appUserId=u", "application/json"),
    (b"\xff\xfe{}", "application/json"),
    (b'["u"]', "application/json"),
    (b'"u"', "application/json"),
    (b"", "application/json"),
    (b'{"appUserId": "u"}', "text/plain"),
    (b'{"appUserId": "u"}', "application/x-www-form-urlencoded"),
    (b'{"appUserId": "u"}', ""),
]


async def test_malformed_json_and_wrong_content_types_are_invalid_request(lite: Harness) -> None:
    for content, content_type in MALFORMED:
        headers = {**lite.server_auth, "content-type": content_type}
        response = await lite.browser.post("/api/v1/sessions", content=content, headers=headers)
        assert response.status_code == 400, (content, content_type, response.text)
        assert error_code(response) == "invalid_request"


async def test_json_with_a_charset_parameter_is_fine(lite: Harness, user_id: str) -> None:
    headers = {**lite.server_auth, "content-type": "application/json; charset=utf-8"}
    response = await lite.browser.post("/api/v1/sessions", content=f'{{"appUserId": "{user_id}"}}', headers=headers)
    assert response.status_code == 200


async def test_an_oversized_body_is_refused_with_413(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    async with running(make_embed(keys, sqlite_url, max_body_bytes=256)) as harness:
        small = await harness.browser.post("/api/v1/sessions", json={"appUserId": user_id}, headers=harness.server_auth)
        assert small.status_code == 200
        large = await harness.browser.post(
            "/api/v1/sessions", json={"appUserId": user_id, "padding": "x" * 1000}, headers=harness.server_auth
        )
        assert large.status_code == 413
        assert error_code(large) == "invalid_request"
        assert "256 bytes" in large.json()["error"]["message"]
        # The same limit guards the browser-facing endpoints.
        token = await harness.session(user_id)
        consent = await harness.browser.post(
            "/api/v1/consent", json={"returnTo": "/" + "x" * 1000}, headers=bearer(token)
        )
        assert consent.status_code == 413 and error_code(consent) == "invalid_request"


async def test_unknown_paths_and_methods_answer_the_typed_error_shape(lite: Harness) -> None:
    missing = await lite.browser.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and error_code(missing) == "invalid_request"
    wrong_method = await lite.browser.get("/api/v1/sessions", headers=lite.server_auth)
    assert wrong_method.status_code == 405 and error_code(wrong_method) == "invalid_request"
