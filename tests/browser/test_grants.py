"""One-time grants in a real Chromium, on the accountless example (example_apps/grant_rewriter):
the popup on the development consent page shows what is asked and who pays; Approve gives the
page a grant its server spends three times; Deny charges nothing; with popups blocked the tab
goes to consent and comes back holding the grant."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Browser, Page, expect

from example_apps.grant_rewriter.app import create_app
from wattfare_embed import Wattfare, new_key_pair
from wattfare_embed.consent import DevConsent
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve

from .conftest import REPLY, Console, _require_chromium

pytestmark = pytest.mark.browser

ASK = "Rewrite (asks you to approve 3 requests, up to $0.5)"


@dataclass
class Rewriter:
    base_url: str
    fake: FakeOpenRouter


@pytest.fixture(scope="module")
def rewriter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rewriter]:
    _require_chromium()
    fake = FakeOpenRouter(reply_text=REPLY)
    keys = new_key_pair()
    database = tmp_path_factory.mktemp("grants") / "wattfare.db"
    with serve(fake) as upstream:
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=f"sqlite+aiosqlite:///{database}",
            consent=DevConsent(auto_approve=False),
            app_name="Rewriter",
            upstream_url=upstream + "/api/v1",
        )
        with serve(create_app(wf)) as base_url:
            yield Rewriter(base_url, fake)


def open_page(browser: Browser, rewriter: Rewriter) -> tuple[Page, Console]:
    context = browser.new_context(viewport={"width": 900, "height": 640})
    context.set_default_timeout(10_000)
    console = Console()
    console.watch(context)
    page = context.new_page()
    page.goto(rewriter.base_url + "/")
    return page, console


def rewrite_button(page: Page) -> object:
    return page.locator("#rewrite")


def test_approving_in_the_popup_gives_three_rewrites_and_the_fourth_token_use_is_grant_invalid(
    browser: Browser, rewriter: Rewriter, tmp_path: Path
) -> None:
    page, console = open_page(browser, rewriter)
    button = page.locator("#rewrite")
    expect(button).to_have_text(ASK)

    with page.expect_popup() as opened:
        button.click()
    popup = opened.value
    expect(popup.get_by_role("heading", name="Let Rewriter make 3 AI requests for you?")).to_be_visible()
    expect(popup.locator("#grant-requests")).to_have_text("3")
    expect(popup.locator("#grant-cap")).to_have_text("$0.50 in total")
    expect(popup.locator("#grant-payer")).to_contain_text("You, through the simulated upstream")
    expect(popup.locator("#grant-expiry")).to_contain_text("in 24 hours")
    with page.expect_request("**/rewrite") as sent:
        popup.get_by_role("button", name="Approve").click()
    token = sent.value.post_data_json["grantToken"]
    assert token.startswith("wfg_")

    expect(page.locator("#result")).to_have_text(REPLY)
    expect(button).to_have_text("Rewrite (uses 1 of your 2 approved requests)")
    button.click()
    expect(button).to_have_text("Rewrite (uses 1 of your 1 approved request)")
    button.click()
    expect(button).to_have_text(ASK)  # all three used: the next click asks again
    assert len([r for r in rewriter.fake.requests if r.path.endswith("/chat/completions")]) >= 3

    fourth = httpx2.post(rewriter.base_url + "/rewrite", json={"text": "again", "grantToken": token})
    assert fourth.status_code == 402
    assert fourth.json()["error"]["code"] == "grant_invalid"
    assert "used up" in fourth.json()["error"]["message"]
    assert console.errors == []
    page.context.close()


def test_denying_charges_nothing_and_says_so(browser: Browser, rewriter: Rewriter) -> None:
    page, console = open_page(browser, rewriter)
    calls_before = len(rewriter.fake.requests)

    with page.expect_popup() as opened:
        page.locator("#rewrite").click()
    opened.value.get_by_role("button", name="Deny").click()

    expect(page.locator("#result")).to_have_text("Not approved: nothing was charged.")
    expect(page.locator("#rewrite")).to_have_text(ASK)
    assert len(rewriter.fake.requests) == calls_before
    assert console.errors == []
    page.context.close()


def test_with_popups_blocked_the_tab_goes_to_consent_and_comes_back_holding_the_grant(
    blocking_browser: Browser, rewriter: Rewriter
) -> None:
    page, _console = open_page(blocking_browser, rewriter)
    key = page.evaluate("document.querySelector('script[type=module]').textContent.match(/pk_test_[A-Za-z0-9]+/)[0]")
    # Asked on load, with no user gesture: the blocker refuses the popup and requestGrant() sends
    # the tab instead (Playwright's evaluate() would count as a gesture).
    page.add_init_script(
        "if (!location.search.includes('wattfare=')) addEventListener('load', () => "
        "import('/wattfare/wattfare.js').then(m => m.createWattfare({ publishableKey: "
        f"'{key}' }}).requestGrant({{ requests: 3, maxUsd: 0.5 }})))"
    )
    page.reload()
    expect(page.get_by_role("heading", name="Let Rewriter make 3 AI requests for you?")).to_be_visible()
    page.get_by_role("button", name="Approve").click()

    expect(page.locator("#rewrite")).to_have_text("Rewrite (uses 1 of your 3 approved requests)")
    assert "wattfare_grant" not in page.url and "wfg_" not in page.url  # taken out of the address
    page.locator("#rewrite").click()
    expect(page.locator("#result")).to_have_text(REPLY)
    expect(page.locator("#rewrite")).to_have_text("Rewrite (uses 1 of your 2 approved requests)")
    page.context.close()
