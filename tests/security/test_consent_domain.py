"""The reference consent domain's pages and forms under hostile input, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy import func, select

from tests.hosted.conftest import Stack, form, running_stack
from wattfare_embed.consent_domain import schema

HUGE = ["1e999999", "1e308", "-1e308", "NaN", "Infinity", "9" * 60]


@pytest.fixture
async def hosted(database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    shared = None if database_url.startswith("sqlite") else database_url
    async with running_stack(tmp_path, shared) as stack:
        yield stack


async def _codes(stack: Stack) -> int:
    query = select(func.count()).select_from(schema.codes)
    return int(await stack.domain.store.runner.run(lambda db: db.execute(query).scalar_one()))


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_a_huge_cap_on_authorize_goes_back_to_the_app_as_invalid_request(hosted: Stack) -> None:
    browser = hosted.browser()
    url = await hosted.consent_url(browser, "ada")
    codes = await _codes(hosted)
    for amount in HUGE:
        query = {name: values[0] for name, values in _query(url).items()}
        response = await browser.get(url.split("?")[0], params={**query, "monthly_usd": amount})
        assert response.status_code == 303, response.text
        back = _query(response.headers["location"])
        assert back["error"] == ["invalid_request"] and "code" not in back
    assert await _codes(hosted) == codes


async def test_a_huge_cap_typed_on_the_consent_screen_issues_no_code(hosted: Stack) -> None:
    browser = hosted.browser()
    page = await hosted.consent_page(browser, await hosted.consent_url(browser, "ada"))
    codes = await _codes(hosted)
    for amount in HUGE:
        answer = await hosted.decide(browser, page, monthly_usd=amount)
        assert answer.status_code == 400
        assert "Enter an amount" in answer.text or "at most" in answer.text
    assert await _codes(hosted) == codes


async def test_a_huge_cap_on_the_dashboard_changes_nothing(hosted: Stack) -> None:
    record = await hosted.connect("ada", monthly_usd="10")
    key = hosted.funding_key(record)
    browser = hosted.browser()
    for amount in HUGE:
        answer = await hosted.on_dashboard(browser, str(record.grant_id), "cap", monthly_usd=amount)
        assert answer.headers["location"] == "/dashboard?notice=invalid"
    assert key.limit == Decimal("10") and (await hosted.connection("ada")).monthly_cap == 10_000_000


async def test_keys_no_database_could_hold_are_unknown_not_a_crash(hosted: Stack) -> None:
    browser = hosted.browser()
    authorize = await browser.get(hosted.domain_url + "/authorize", params={"client_id": "pk\x00", "redirect_uri": "x"})
    assert authorize.status_code == 400 and "not registered" in authorize.text

    async with httpx2.AsyncClient() as http:
        basic = base64.b64encode(b"pk_\x00:sk_\x00").decode()
        token = await http.post(
            hosted.domain_url + "/token",
            data={"grant_type": "authorization_code"},
            headers={"authorization": f"Basic {basic}"},
        )
        assert token.status_code == 401 and token.json()["error"] == "invalid_client"
        pair = base64.b64encode(f"{hosted.keys.publishable_key}:{hosted.keys.secret_key}".encode()).decode()
        revoke = await http.post(
            hosted.domain_url + "/revoke", data={"token": "grt\x00"}, headers={"authorization": f"Basic {pair}"}
        )
        assert revoke.status_code == 200

    login_page = await browser.get(hosted.domain_url + "/login")
    fields = {**form(login_page.text, "/login").fields, "email": "ada\x00@example.com", "password": "whatever!"}
    assert (await browser.post_form(hosted.domain_url + "/login", fields)).status_code == 401

    dashboard = await hosted.dashboard(browser)
    csrf = form(dashboard.text, "/logout").fields["csrf"]
    gone = await browser.post_form(hosted.domain_url + "/dashboard/grants/grt%00x/revoke", {"csrf": csrf})
    assert gone.status_code == 404
