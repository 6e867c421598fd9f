"""Session tokens: HS256 with a pinned algorithm, this app's claims only, refused when forged or expired."""

from __future__ import annotations

import base64
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from wattfare_embed import AppKeys, new_key_pair
from wattfare_embed.crypto import derive_key

from .conftest import Harness, bearer, error_code, make_embed, running

SESSION_KEY_PURPOSE = b"wattfare session tokens v1"


def _claims(keys: AppKeys, user: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"wattfare_embed:{keys.app_id}",
        "aud": "wattfare:session",
        "sub": user,
        "app": keys.app_id,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _signed(keys: AppKeys, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, derive_key(keys.secret_key, SESSION_KEY_PURPOSE), algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _refused(harness: Harness, token: str) -> str:
    response = await harness.browser.get("/api/v1/connections", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert error_code(response) == "auth"
    message: str = response.json()["error"]["message"]
    return message


async def test_a_well_formed_token_is_accepted(lite: Harness, user_id: str) -> None:
    # The control for every forgery below: the same claims, properly signed, pass.
    response = await lite.browser.get(
        "/api/v1/connections", headers=bearer(_signed(lite.keys, _claims(lite.keys, user_id)))
    )
    assert response.status_code == 200
    assert response.json()["appUserId"] == user_id


async def test_minted_tokens_are_hs256_with_this_apps_claims(lite: Harness, user_id: str) -> None:
    before = int(time.time())
    response = await lite.browser.post(
        "/api/v1/sessions",
        json={"appUserId": user_id, "requestLimit": {"monthlyUsd": 7.5}},
        headers=lite.server_auth,
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "HS256"
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == user_id
    assert claims["app"] == lite.keys.app_id
    assert claims["lim"] == 7_500_000  # micro-dollars, an integer
    assert claims["aud"] == "wattfare:session"
    assert lite.keys.app_id in claims["iss"]
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 600 == body["expiresAt"]
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 12


async def test_no_limit_claim_without_a_requested_limit_and_unique_ids(lite: Harness, user_id: str) -> None:
    first, second = await lite.session(user_id), await lite.session(user_id)
    claims = [jwt.decode(token, options={"verify_signature": False}) for token in (first, second)]
    assert "lim" not in claims[0]
    assert claims[0]["jti"] != claims[1]["jti"]


async def test_the_raw_secret_key_never_signs_a_token(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, lite.keys.secret_key, algorithms=["HS256"], audience="wattfare:session")


async def test_session_lifetime_follows_the_setting(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    async with running(make_embed(keys, sqlite_url, session_ttl_seconds=45)) as harness:
        claims = jwt.decode(await harness.session(user_id), options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 45


async def test_an_expired_token_is_refused(lite: Harness, user_id: str) -> None:
    message = await _refused(
        lite, _signed(lite.keys, _claims(lite.keys, user_id, iat=int(time.time()) - 700, exp=int(time.time()) - 100))
    )
    assert "expired" in message


async def test_a_token_minted_eleven_minutes_ago_is_refused(
    lite: Harness, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_now = time.time()
    with monkeypatch.context() as patch:
        patch.setattr("wattfare_embed.tokens.time", SimpleNamespace(time=lambda: real_now - 660))
        session = await lite.embed.create_session(user_id)
    assert session.expires_at < real_now
    assert "expired" in await _refused(lite, session.token)


async def test_a_token_of_another_app_is_refused(lite: Harness, user_id: str, sqlite_url: str) -> None:
    other = make_embed(new_key_pair(), sqlite_url)
    foreign = await other.create_session(user_id)
    await _refused(lite, foreign.token)


async def test_a_token_with_another_apps_claims_but_this_apps_signature_is_refused(lite: Harness, user_id: str) -> None:
    claims = _claims(lite.keys, user_id, app="someotherapp")
    await _refused(lite, _signed(lite.keys, claims))


FORGED_CLAIMS: list[dict[str, Any]] = [
    {"aud": "wattfare:dev-consent-code"},
    {"aud": None},
    {"iss": "wattfare_embed:someotherapp"},
    {"iss": None},
    {"exp": None},
    {"iat": None},
    {"jti": None},
    {"sub": None},
    {"sub": 12345},
]


async def test_issuer_audience_and_required_claims_are_checked(lite: Harness, user_id: str) -> None:
    # Each token is signed with the right key: only the claims are wrong (or missing).
    for changes in FORGED_CLAIMS:
        claims = _claims(lite.keys, user_id, **changes)
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
        await _refused(lite, _signed(lite.keys, claims))


async def test_alg_none_is_refused(lite: Harness, user_id: str) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(lite.keys, user_id)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        await _refused(lite, token)


async def test_an_rs256_token_is_refused(lite: Harness, user_id: str) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await _refused(lite, jwt.encode(_claims(lite.keys, user_id), private_key, algorithm="RS256"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_hs256_signed_with_public_material_is_refused(lite: Harness, user_id: str) -> None:
    # Key confusion: anything a browser can see (the publishable key, the app id) must not sign.
    for key in (lite.keys.publishable_key, lite.keys.app_id, lite.keys.secret_key):
        await _refused(lite, jwt.encode(_claims(lite.keys, user_id), key.encode(), algorithm="HS256"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_another_hmac_algorithm_with_the_right_key_is_refused(lite: Harness, user_id: str) -> None:
    token = jwt.encode(
        _claims(lite.keys, user_id), derive_key(lite.keys.secret_key, SESSION_KEY_PURPOSE), algorithm="HS512"
    )
    await _refused(lite, token)


async def test_a_tampered_token_is_refused(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    header, payload, signature = token.split(".")
    # Another user in the payload, the original signature.
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["sub"] = "someone-else"
    forged_payload = _b64(json.dumps(claims).encode())
    await _refused(lite, f"{header}.{forged_payload}.{signature}")
    # One flipped signature character.
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await _refused(lite, f"{header}.{payload}.{flipped}")
    # Garbage.
    await _refused(lite, "not-a-token")
    await _refused(lite, f"{header}.{payload}")


async def test_a_missing_or_malformed_authorization_header_is_refused(lite: Harness) -> None:
    for authorization in (None, "", "Bearer", "Basic dXNlcjpwYXNz", "Token abc"):
        headers = {} if authorization is None else {"authorization": authorization}
        response = await lite.browser.get("/api/v1/connections", headers=headers)
        assert response.status_code == 401, authorization
        assert error_code(response) == "auth"


async def test_the_bearer_scheme_is_case_insensitive(lite: Harness, user_id: str) -> None:
    token = await lite.session(user_id)
    response = await lite.browser.get("/api/v1/connections", headers={"authorization": f"bearer {token}"})
    assert response.status_code == 200
