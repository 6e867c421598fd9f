"""The protocol's edges at the domain: exact redirect URIs, single-use codes, client authentication."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from sqlalchemy import update

from wattfare_embed import ConfigurationError, HostedConsent, UpstreamError
from wattfare_embed.consent_domain import schema
from wattfare_embed.pkce import s256_challenge

from .conftest import APP_NAME, Browser, Stack, form


def authorize_url(stack: Stack, verifier: str, **overrides: str) -> str:
    params = {
        "response_type": "code",
        "client_id": stack.keys.publishable_key,
        "redirect_uri": stack.mount_url + "/callback",
        "state": secrets.token_urlsafe(16),
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
        "monthly_usd": "10.00",
        **overrides,
    }
    return f"{stack.domain_url}/authorize?{urlencode(params)}"


async def approved_code(stack: Stack, browser: Browser, verifier: str) -> str:
    page = await stack.consent_page(browser, authorize_url(stack, verifier))
    redirect = await stack.decide(browser, page)
    return parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]


async def exchange(
    stack: Stack, code: str, verifier: str, *, auth: tuple[str, str] | None = None, **fields: str
) -> httpx2.Response:
    form_fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": stack.mount_url + "/callback",
        "code_verifier": verifier,
        **fields,
    }
    async with httpx2.AsyncClient(timeout=15) as http:
        return await http.post(
            stack.domain_url + "/token",
            data=form_fields,
            auth=auth or (stack.keys.publishable_key, stack.keys.secret_key),
        )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/wattfare/callback",
        "{mount}/callback/",
        "{mount}/callback?next=https://evil.example",
        "{mount}/callbac",
        "{mount_on_localhost}/callback",
        "",
    ],
)
async def test_a_redirect_uri_not_registered_exactly_never_redirects(stack: Stack, redirect_uri: str) -> None:
    browser = stack.browser()
    await stack.dashboard(browser)  # signed in: the check does not depend on it
    wrong = redirect_uri.format(
        mount=stack.mount_url, mount_on_localhost=stack.mount_url.replace("127.0.0.1", "localhost")
    )
    response = await browser.get(authorize_url(stack, "v" * 43, redirect_uri=wrong))
    assert response.status_code == 400 and "location" not in response.headers
    assert "did not register this return address" in response.text


async def test_a_tampered_redirect_uri_in_the_posted_form_never_redirects(stack: Stack) -> None:
    browser = stack.browser()
    page = await stack.consent_page(browser, authorize_url(stack, "v" * 43))
    fields = form(page.text, "/authorize").fields
    fields.update(decision="approve", redirect_uri="https://evil.example/cb")
    response = await browser.post_form(stack.domain_url + "/authorize", fields)
    assert response.status_code == 400 and "location" not in response.headers


async def test_an_unknown_client_never_redirects(stack: Stack) -> None:
    response = await stack.browser().get(authorize_url(stack, "v" * 43, client_id="pk_live_nosuchapp"))
    assert response.status_code == 400 and "location" not in response.headers
    assert "not registered here" in response.text


async def test_a_request_without_pkce_goes_back_to_the_app_as_invalid_request(stack: Stack) -> None:
    url = authorize_url(stack, "v" * 43, code_challenge_method="plain")
    response = await stack.browser().get(url)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(stack.mount_url + "/callback?")
    assert parse_qs(urlsplit(location).query)["error"] == ["invalid_request"]


async def test_a_replayed_code_is_invalid_grant_and_revokes_what_it_minted(stack: Stack) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await approved_code(stack, stack.browser(), verifier)
    first = await exchange(stack, code, verifier)
    assert first.status_code == 200, first.text
    grant = first.json()
    assert grant["token_type"] == "funding" and grant["monthly_usd"] == "10.00" and grant["hard_limit_usd"] == "10.00"
    assert grant["period"] == "month" and grant["expires_at"] is None
    assert first.headers["cache-control"] == "no-store"
    assert stack.fake.keys.find(grant["funding_key"]) is not None

    replay = await exchange(stack, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # Someone else had the code: what it minted is revoked (RFC 6749 §4.1.2).
    assert stack.fake.keys.find(grant["funding_key"]) is None
    stored = await stack.domain.store.get_grant(grant["grant_id"])
    assert stored is not None and stored.status == "revoked"


async def test_a_wrong_client_secret_is_invalid_client_and_leaves_the_code_usable(stack: Stack) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await approved_code(stack, stack.browser(), verifier)
    wrong_secret = stack.keys.secret_key[:-4] + "AAAA"
    for auth in [(stack.keys.publishable_key, wrong_secret), ("pk_live_nosuchapp", stack.keys.secret_key)]:
        refused = await exchange(stack, code, verifier, auth=auth)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert refused.headers["www-authenticate"].startswith("Basic")
    async with httpx2.AsyncClient() as http:
        unauthenticated = await http.post(stack.domain_url + "/token", data={"grant_type": "authorization_code"})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "invalid_client"
    assert stack.fake.keys.managed() == [], "nothing was minted"
    assert (await exchange(stack, code, verifier)).status_code == 200


async def test_a_wrong_verifier_redirect_uri_or_client_is_invalid_grant(stack: Stack) -> None:
    other = await stack.domain.register_app(
        name="Other App", redirect_uris=["http://127.0.0.1:9/cb"], webhook_url="http://127.0.0.1:9/hooks"
    )
    browser = stack.browser()
    cases = [
        {"code_verifier": secrets.token_urlsafe(48)},
        {"redirect_uri": stack.mount_url + "/other"},
        {"auth": (other.publishable_key, other.secret_key)},
    ]
    for case in cases:
        verifier = secrets.token_urlsafe(48)
        code = await approved_code(stack, browser, verifier)
        auth = case.pop("auth", None)
        assert auth is None or isinstance(auth, tuple)
        response = await exchange(stack, code, verifier, auth=auth, **{k: str(v) for k, v in case.items()})
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant", case
    assert stack.fake.keys.managed() == []


async def test_an_expired_code_is_invalid_grant(stack: Stack) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await approved_code(stack, stack.browser(), verifier)
    await stack.domain.store.runner.run(lambda db: db.execute(update(schema.codes).values(expires_at=0)))
    response = await exchange(stack, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_revocation_answers_200_and_touches_only_the_clients_own_grants(stack: Stack) -> None:
    record = await stack.connect("ada")
    other = await stack.domain.register_app(
        name="Other App", redirect_uris=["http://127.0.0.1:9/cb"], webhook_url="http://127.0.0.1:9/hooks"
    )
    async with httpx2.AsyncClient() as http:
        for token, auth in [
            ("grt_unknown", (stack.keys.publishable_key, stack.keys.secret_key)),
            (str(record.grant_id), (other.publishable_key, other.secret_key)),
        ]:
            response = await http.post(stack.domain_url + "/revoke", data={"token": token}, auth=auth)
            assert response.status_code == 200
        refused = await http.post(stack.domain_url + "/revoke", data={"token": str(record.grant_id)})
        assert refused.status_code == 401
    assert (await stack.chat("ada")).status_code == 200, "another app cannot revoke this app's grant"


async def test_the_discovery_document_and_the_issuer_check(stack: Stack) -> None:
    async with httpx2.AsyncClient() as http:
        document = (await http.get(stack.domain_url + "/.well-known/wattfare-configuration")).json()
    assert document["issuer"] == stack.domain_url and document["protocol_version"] == 1
    assert document["authorization_endpoint"] == stack.domain_url + "/authorize"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]

    # The same server reached by another name is another issuer: the app's secret never goes there.
    elsewhere = HostedConsent(stack.domain_url.replace("localhost", "127.0.0.1"))
    with pytest.raises(UpstreamError, match="issuer"):
        await elsewhere.discover(stack.embed.http)
    with pytest.raises(ConfigurationError, match="https"):
        HostedConsent("http://consent.example.com")
    assert HostedConsent("http://consent.internal", allow_insecure_http=True).domain_url == "http://consent.internal"


async def test_the_consent_screen_names_the_app_as_registered(stack: Stack) -> None:
    browser = stack.browser()
    page = await stack.consent_page(browser, authorize_url(stack, "v" * 43, monthly_usd="5000"))
    assert f"Allow {APP_NAME} to spend" in page.text
    assert 'value="1000.00"' in page.text, "a request above the domain's maximum is shown at the maximum"
    too_much = await stack.decide(browser, page, monthly_usd="1000.01")
    assert too_much.status_code == 400 and "at most $1000.00" in too_much.text
    # The form's redirect may end at the app's redirect URI, and nowhere else.
    assert f"form-action 'self' {stack.app_url};" in page.headers["content-security-policy"]
