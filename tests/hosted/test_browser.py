"""The consent screen on the domain's own origin, in a real Chromium, through the ``wattfare.js`` popup."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.screenshots import SCREENSHOTS
from wattfare_embed.money import micros_from_usd

from .conftest import APP_NAME, PASSWORD, Stack

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
IMAGES = SCREENSHOTS


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium): the hosted consent browser test needs it"
        if IN_CI:
            pytest.fail(reason + ", and CI must run it")
        pytest.skip(reason)
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def test_the_consent_screen_on_the_second_origin_in_a_popup(stack: Stack, chromium: Browser) -> None:
    email = "ada@example.com"  # a fixed address, so the screenshot in the docs stays the same
    await stack.domain.add_user(email, PASSWORD)
    context = await chromium.new_context(viewport={"width": 960, "height": 640})
    context.set_default_timeout(10_000)
    await context.add_cookies([{"name": "app_user", "value": "ada", "url": stack.app_url}])
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    page = await context.new_page()
    await page.goto(stack.app_url + "/")
    connect = page.get_by_role("button", name="Connect AI budget")
    await expect(connect).to_be_visible()

    async with page.expect_popup() as opened:
        await connect.click()
    popup = await opened.value
    # Signed out on the domain: its own login page, on its own origin.
    await expect(popup.get_by_role("heading", name="Sign in to Wattfare")).to_be_visible()
    assert popup.url.startswith(stack.domain_url + "/login")
    await expect(popup.get_by_text(f"{APP_NAME} asks to use your AI budget")).to_be_visible()  # who is asking
    # The card keeps a margin inside the 520 px popup.
    card = await popup.locator("main").bounding_box()
    width = await popup.evaluate("innerWidth")
    assert card is not None and width <= 560 and card["x"] >= 8 and card["x"] + card["width"] <= width - 8, (
        card,
        width,
    )
    await popup.get_by_label("Email").fill(email)
    await popup.get_by_label("Password").fill(PASSWORD)
    await popup.get_by_role("button", name="Sign in").click()

    await expect(popup.get_by_role("heading", name=f"Allow {APP_NAME} to spend from your AI budget?")).to_be_visible()
    assert popup.url.startswith(stack.domain_url + "/authorize?")
    await expect(popup.get_by_text(f"You ({email})")).to_be_visible()
    await popup.get_by_label("Monthly cap (USD)").fill("12.50")
    IMAGES.mkdir(parents=True, exist_ok=True)
    await popup.screenshot(path=str(IMAGES / "hosted-consent.png"))
    await popup.get_by_role("button", name="Approve").click()

    # The callback page on the app's origin posts the result to the opener and closes.
    await expect(page.locator("wattfare-connect [part=label]")).to_have_text("$12.50 left of $12.50")
    if not popup.is_closed():
        await popup.wait_for_event("close")
    assert len(context.pages) == 1
    record = await stack.connection("ada")
    assert record.authority == "hosted" and record.monthly_cap == micros_from_usd("12.50")
    assert stack.funding_key(record).limit == 12.5
    assert errors == []
    await context.close()
