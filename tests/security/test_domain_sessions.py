"""Consent-domain sessions end when they should: sign-out, a password change, the operator's command."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx2
import pytest

from tests.hosted.conftest import form
from wattfare_embed.cli import main

from .conftest import PASSWORD, Domain, serving_domain

NEW_PASSWORD = "a different horse battery"


@pytest.fixture
async def domain(database_url: str) -> AsyncIterator[Domain]:
    async with serving_domain(database_url) as served:
        yield served


async def signed_in(domain: Domain, password: str = PASSWORD) -> httpx2.AsyncClient:
    browser = httpx2.AsyncClient()
    response = await domain.sign_in(browser, password)
    assert response.status_code == 303, response.text
    return browser


async def opens_dashboard(domain: Domain, browser: httpx2.AsyncClient) -> bool:
    response = await browser.get(domain.url + "/dashboard")
    return response.status_code == 200


def copy_of(browser: httpx2.AsyncClient) -> httpx2.AsyncClient:
    """Another browser holding a copy of every cookie (a stolen session cookie, say)."""
    return httpx2.AsyncClient(cookies=dict(browser.cookies.items()))


async def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(domain: Domain) -> None:
    browser = await signed_in(domain)
    thief = copy_of(browser)
    assert await opens_dashboard(domain, thief)

    page = await browser.get(domain.url + "/dashboard")
    out = await browser.post(domain.url + "/logout", data=form(page.text, "/logout").fields)
    assert out.status_code == 303

    assert not await opens_dashboard(domain, thief), "the copied cookie died with the session"
    assert not await opens_dashboard(domain, browser)
    await browser.aclose()
    await thief.aclose()


async def test_a_password_change_ends_every_session_of_the_user(domain: Domain) -> None:
    first, second = await signed_in(domain), await signed_in(domain)
    other = f"bea-{uuid.uuid4().hex[:8]}@example.com"
    await domain.domain.add_user(other, PASSWORD)
    bea = httpx2.AsyncClient()
    assert (await domain.sign_in(bea, email=other)).status_code == 303

    assert await domain.domain.set_password(domain.email, NEW_PASSWORD) == 2

    assert not await opens_dashboard(domain, first) and not await opens_dashboard(domain, second)
    assert await opens_dashboard(domain, bea), "another user's session is untouched"
    assert (await domain.sign_in(httpx2.AsyncClient(), PASSWORD)).status_code == 401
    assert await opens_dashboard(domain, await signed_in(domain, NEW_PASSWORD))


async def test_the_operator_ends_sessions_from_the_command_line(domain: Domain) -> None:
    browser, other = await signed_in(domain), httpx2.AsyncClient()
    cy = f"cy-{uuid.uuid4().hex[:8]}@example.com"
    await domain.domain.add_user(cy, PASSWORD)
    assert (await domain.sign_in(other, email=cy)).status_code == 303
    url = domain.domain.settings.database_url

    def run(*arguments: str) -> int:
        return main(["consent-domain", *arguments, "--database-url", url])

    assert await asyncio.to_thread(run, "end-sessions", "--email", domain.email) == 0
    assert not await opens_dashboard(domain, browser) and await opens_dashboard(domain, other)
    assert await asyncio.to_thread(run, "end-sessions", "--all") == 0
    assert not await opens_dashboard(domain, other)
    assert await asyncio.to_thread(run, "end-sessions") == 2  # neither --email nor --all
    assert await asyncio.to_thread(run, "set-password", "--email", domain.email, "--password", NEW_PASSWORD) == 0
    assert await opens_dashboard(domain, await signed_in(domain, NEW_PASSWORD))


async def test_a_csrf_token_from_another_session_is_refused(domain: Domain) -> None:
    mine, theirs = await signed_in(domain), await signed_in(domain)
    my_page = await mine.get(domain.url + "/dashboard")
    my_token = form(my_page.text, "/logout").fields["csrf"]
    # The same browser cookie for CSRF, but the session it was issued in is not this one.
    theirs.cookies.set("wcd_csrf", mine.cookies["wcd_csrf"])
    refused = await theirs.post(domain.url + "/logout", data={"csrf": my_token})
    assert refused.status_code == 403
    assert await opens_dashboard(domain, theirs), "nothing happened"

    # A token from before signing in again is stale too.
    await mine.post(domain.url + "/logout", data={"csrf": my_token})
    assert (await domain.sign_in(mine)).status_code == 303
    assert (await mine.post(domain.url + "/logout", data={"csrf": my_token})).status_code == 403


async def test_over_https_the_domains_cookies_are_host_prefixed(sqlite_url: str) -> None:
    async with serving_domain(sqlite_url) as plain:
        page = await httpx2.AsyncClient().get(plain.url + "/login")
        assert any(value.startswith("wcd_csrf=") for value in page.headers.get_list("set-cookie"))
    async with serving_domain(sqlite_url, public_url_override="https://consent.example.com") as secure:
        http = httpx2.AsyncClient()
        page = await http.get(secure.url + "/login")
        [csrf] = page.headers.get_list("set-cookie")
        assert csrf.startswith("__Host-wcd_csrf=") and "secure" in csrf.lower() and "path=/" in csrf.lower()
        fields = {**form(page.text, "/login").fields, "email": secure.email, "password": PASSWORD}
        raw_cookie = csrf.split(";")[0]
        signed = await http.post(secure.url + "/login", data=fields, headers={"cookie": raw_cookie})
        assert signed.status_code == 303, signed.text
        [session] = signed.headers.get_list("set-cookie")
        lowered = session.lower()
        assert session.startswith("__Host-wcd_session=") and "secure" in lowered and "httponly" in lowered
        assert "path=/" in lowered and "domain=" not in lowered
