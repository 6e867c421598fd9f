"""The ``make demo`` chat page (``example_apps/fastapi_chat``) in a real Chromium: copy written for the
person using it, the Connect prompt gone once connected, a sticky header, and its screenshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from example_apps.fastapi_chat.app import create_app
from example_apps.fastapi_chat.run_demo import make_believe_prices
from wattfare_embed import DevConsent, Wattfare, new_key_pair
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve

from .conftest import IMAGES, Console

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    fake = FakeOpenRouter(chunk_delay=0.02)
    make_believe_prices(fake)
    keys = new_key_pair()
    database = tmp_path_factory.mktemp("demo-chat") / "wattfare.db"
    with serve(fake) as upstream:
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=f"sqlite+aiosqlite:///{database}",
            consent=DevConsent(auto_approve=False),
            resolve_user=lambda request: request.cookies.get("demo_user"),
            app_name="Acme Chat",
            upstream_url=upstream + "/api/v1",
        )
        with serve(create_app(wf, simulated=True)) as base_url:
            yield base_url


def test_the_demo_speaks_to_its_user_and_tidies_up_after_connecting(browser: Browser, demo_chat: str) -> None:
    context = browser.new_context(viewport={"width": 960, "height": 560})
    context.set_default_timeout(15_000)
    context.add_cookies([{"name": "demo_user", "value": "ada", "url": demo_chat}])
    console = Console()
    console.watch(context)
    page = context.new_page()
    try:
        page.goto(demo_chat + "/")
        message = page.get_by_label("Message")
        message.fill("Hello?")
        page.get_by_role("button", name="Send").click()
        prompt = page.locator(".msg.error")
        expect(prompt).to_have_text("Connect your AI budget to continue. Connect AI budget")
        expect(prompt).not_to_contain_text("ask them")  # the developer's message stays out of the page

        with page.expect_popup() as opened:
            prompt.get_by_role("button", name="Connect AI budget").click()
        popup = opened.value
        popup.get_by_label("Monthly cap").fill("5")
        popup.get_by_role("button", name="Approve").click()
        label = page.locator("wattfare-connect [part=label]")
        expect(label).to_have_text("$5.00 left of $5.00")
        expect(prompt).to_have_count(0)  # the old Connect bubble is gone

        for text in ("What is a budget bar?", "And a monthly cap?"):
            message.fill(text)
            page.get_by_role("button", name="Send").click()
            expect(page.locator(".msg.assistant").last).not_to_be_empty()
            expect(page.get_by_role("button", name="Send")).to_be_enabled()
        expect(label).not_to_have_text("$5.00 left of $5.00")
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        header = page.locator("header").bounding_box()
        assert header is not None and header["y"] == 0, "the header stays at the top"
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(Path(IMAGES / "demo.png")))
        # The demo's /chat answers "not connected" with HTTP 402, which Chromium logs as a failed load.
        assert [error for error in console.errors if "status of 402" not in error] == []
    finally:
        context.close()
