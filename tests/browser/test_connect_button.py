"""The "Connect AI budget" button in a real Chromium: popup consent, redirect fallback, budget bar."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from .conftest import MOUNT, Demo, Visit, open_visit

pytestmark = pytest.mark.browser

LEFT_OF = re.compile(r"^\$\d+\.\d\d left of \$\d+\.\d\d$")


def connect_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Connect AI budget")


def budget_label(page: Page) -> Locator:
    return page.locator("wattfare-connect [part=label]")


def changes(page: Page) -> int:
    count: int = page.evaluate("window.__changes.length")
    return count


def wait_for_change(page: Page, before: int) -> dict[str, Any]:
    """Wait until the element reported a status after ``before`` changes; return the latest one."""
    page.wait_for_function("n => window.__changes.length > n", arg=before)
    status: dict[str, Any] = page.evaluate("window.__changes.at(-1)")
    return status


def open_home(visit: Visit, demo: Demo) -> Page:
    page = visit.page
    page.goto(demo.base_url + "/")
    expect(connect_button(page)).to_be_visible()
    return page


def decide(popup: Page, decision: str, cap: str | None = None, screenshot: Path | None = None) -> None:
    """Act on the development consent page in the popup; it closes itself afterwards."""
    expect(popup.get_by_role("heading", name="Allow Acme Chat to charge AI to your budget?")).to_be_visible()
    if cap is not None:
        popup.get_by_label("Monthly cap").fill(cap)
    if screenshot is not None:
        popup.screenshot(path=str(screenshot))
    popup.get_by_role("button", name=decision).click()
    if not popup.is_closed():  # it may be gone already (see the browser-testing recipe, gotcha 1)
        popup.wait_for_event("close")


def connect_through_popup(page: Page, cap: str, screenshot: Path | None = None) -> None:
    with page.expect_popup() as opened:
        connect_button(page).click()
    decide(opened.value, "Approve", cap, screenshot)
    expect(budget_label(page)).to_have_text(f"${float(cap):.2f} left of ${float(cap):.2f}")


def test_approve_in_the_popup_then_spend_and_watch_the_bar_fall(
    browser: Browser, demo: Demo, images: Path, request: pytest.FixtureRequest
) -> None:
    visit = open_visit(browser, demo, user="ada@acme.example")
    request.addfinalizer(visit.context.close)
    page = open_home(visit, demo)
    assert demo.server_status(visit.user)["connected"] is False

    connect_through_popup(page, "12.50", screenshot=images / "consent.png")
    assert len(visit.context.pages) == 1, "the popup closed itself"
    expect(page.get_by_role("progressbar", name="AI budget left")).to_have_js_property("value", 12.5)
    expect(page.get_by_role("button", name="Disconnect")).to_be_visible()
    expect(connect_button(page)).to_be_hidden()
    server = demo.server_status(visit.user)
    assert server["connected"] is True and server["monthlyUsd"] == 12.5

    page.get_by_role("button", name="Send").click()
    expect(page.locator("#reply")).to_have_text("Here is a short streamed reply from the fake model.")
    expect(budget_label(page)).not_to_have_text("$12.50 left of $12.50")
    text = budget_label(page).inner_text()
    assert LEFT_OF.match(text) and text.endswith(" left of $12.50"), text
    left = float(text[1:].split(" ")[0])
    spent = demo.server_status(visit.user)["spentUsd"]
    assert 0 < spent < 12.5
    assert left == pytest.approx(12.5 - spent, abs=0.01)
    bar: float = page.evaluate("document.querySelector('wattfare-connect').shadowRoot.querySelector('progress').value")
    assert bar == pytest.approx(left)

    page.screenshot(path=str(images / "connected.png"), clip={"x": 0, "y": 0, "width": 960, "height": 280})
    assert visit.console.errors == []


def test_a_second_reply_lowers_the_bar_again(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    connect_through_popup(page, "10")
    remaining = []
    for _ in range(2):
        before = budget_label(page).inner_text()
        page.get_by_role("button", name="Send").click()
        expect(budget_label(page)).not_to_have_text(before)
        remaining.append(float(budget_label(page).inner_text()[1:].split(" ")[0]))
    assert 0 < remaining[1] < remaining[0] < 10
    assert visit.console.errors == []


def test_blocked_popup_falls_back_to_a_full_page_redirect_and_back(
    blocking_browser: Browser, demo: Demo, request: pytest.FixtureRequest
) -> None:
    visit = open_visit(blocking_browser, demo)
    request.addfinalizer(visit.context.close)
    page = visit.page
    # The page calls connect() on load, with no user gesture: the popup blocker refuses it.
    page.goto(demo.base_url + "/?autoconnect=7")
    page.wait_for_url(f"**{MOUNT}/dev/consent?state=*")
    expect(page.get_by_label("Monthly cap")).to_have_value("7")
    page.get_by_role("button", name="Approve").click()
    expect(budget_label(page)).to_have_text("$7.00 left of $7.00")
    assert page.url == demo.base_url + "/", "the ?wattfare=connected marker was removed from the address"
    assert page.evaluate("document.querySelector('wattfare-connect').wattfare.redirectResult") == "connected"
    assert len(visit.context.pages) == 1, "no popup was ever opened"
    assert demo.server_status(visit.user)["monthlyUsd"] == 7
    assert visit.console.errors == []


def test_deny_leaves_the_user_not_connected(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    before = changes(page)
    with page.expect_popup() as opened:
        connect_button(page).click()
    decide(opened.value, "Deny")
    status = wait_for_change(page, before)
    assert status["connected"] is False and status["status"] == "not_connected"
    expect(connect_button(page)).to_be_visible()
    expect(budget_label(page)).to_have_text("")
    assert demo.server_status(visit.user)["connected"] is False
    assert visit.console.errors == []


def test_closing_the_popup_early_resolves_not_connected(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    with page.expect_popup() as opened:
        # page.evaluate runs with a user gesture, so this is like calling connect() from a click.
        page.evaluate(
            """() => {
              window.__result = null;
              document.querySelector("wattfare-connect").wattfare.connect().then(
                (status) => { window.__result = { resolved: status }; },
                (error) => { window.__result = { rejected: error.code }; });
            }"""
        )
    popup = opened.value
    expect(popup.get_by_role("button", name="Approve")).to_be_visible()
    popup.close()
    page.wait_for_function("() => window.__result !== null")
    result = page.evaluate("window.__result")
    assert "resolved" in result, result
    assert result["resolved"]["connected"] is False
    assert result["resolved"]["status"] == "not_connected"
    expect(connect_button(page)).to_be_visible()
    assert visit.console.errors == []


def test_disconnect_returns_to_the_connect_button(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    connect_through_popup(page, "3")
    page.get_by_role("button", name="Disconnect").click()
    expect(connect_button(page)).to_be_visible()
    expect(budget_label(page)).to_have_text("")
    expect(page.get_by_role("progressbar")).to_be_hidden()
    # Focus moved from the vanished Disconnect button to the Connect button.
    focused = page.evaluate("document.querySelector('wattfare-connect').shadowRoot.activeElement?.textContent")
    assert focused == "Connect AI budget"
    server = demo.server_status(visit.user)
    assert server["connected"] is False and server["status"] == "revoked"
    assert visit.console.errors == []


def test_messages_from_a_foreign_origin_are_ignored(visit: Visit, demo: Demo, foreign_origin: str) -> None:
    page = open_home(visit, demo)
    with page.expect_popup() as opened:
        connect_button(page).click()
    consent = opened.value
    expect(consent.get_by_role("button", name="Approve")).to_be_visible()

    # While connect() waits, another site posts a well-formed "connected" message: from an iframe...
    page.evaluate(
        """url => new Promise((loaded) => {
          const frame = document.createElement("iframe");
          frame.src = url;
          frame.onload = loaded;
          document.body.append(frame);
        })""",
        foreign_origin + "/forge",
    )
    # ...and from a popup of its own.
    with page.expect_popup() as forged:
        page.evaluate("url => { window.open(url, 'forger'); }", foreign_origin + "/forge")
    expect(forged.value).to_have_title("sent")
    page.wait_for_function(
        "origin => window.__messages.filter((m) => m.origin === origin).length >= 2", arg=foreign_origin
    )
    page.wait_for_timeout(400)  # more than the client needs to act on a message it believed
    expect(connect_button(page)).to_be_visible()
    expect(budget_label(page)).to_have_text("")
    assert page.evaluate("document.querySelector('wattfare-connect').status.connected") is False

    # The real popup still completes the flow, with the real cap, not the forged $999.
    decide(consent, "Approve", "4")
    expect(budget_label(page)).to_have_text("$4.00 left of $4.00")
    assert visit.console.errors == []


def test_keyboard_tab_to_the_button_and_enter_opens_the_popup(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    page.locator("wattfare-connect").evaluate("element => element.setAttribute('monthly-usd', '2')")
    page.keyboard.press("Tab")
    focus = page.evaluate(
        """() => {
          const inner = document.activeElement.shadowRoot?.activeElement;
          return { host: document.activeElement.localName, text: inner?.textContent,
                   visible: inner?.matches(":focus-visible"), outline: inner && getComputedStyle(inner).outlineStyle };
        }"""
    )
    assert focus == {"host": "wattfare-connect", "text": "Connect AI budget", "visible": True, "outline": "solid"}
    with page.expect_popup() as opened:
        page.keyboard.press("Enter")
    popup = opened.value
    expect(popup.get_by_label("Monthly cap")).to_have_value("2")  # from the monthly-usd attribute
    decide(popup, "Approve")
    expect(budget_label(page)).to_have_text("$2.00 left of $2.00")
    # Keyboard focus followed the vanished Connect button to Disconnect.
    focused = page.evaluate("document.querySelector('wattfare-connect').shadowRoot.activeElement?.textContent")
    assert focused == "Disconnect"
    assert visit.console.errors == []


def test_the_element_is_accessible_and_styleable(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    connect_through_popup(page, "6.4")
    live = page.locator("wattfare-connect [aria-live=polite]")
    expect(live).to_have_text("$6.40 left of $6.40")
    bar = page.get_by_role("progressbar", name="AI budget left")
    expect(bar).to_have_attribute("aria-valuetext", "$6.40 left of $6.40")
    # Every part can be restyled from the host page.
    page.add_style_tag(
        content="wattfare-connect::part(disconnect), wattfare-connect::part(label) { color: rgb(1, 2, 3); }"
    )
    for part in ("disconnect", "label"):
        color = page.evaluate(
            "part => getComputedStyle(document.querySelector('wattfare-connect')"
            ".shadowRoot.querySelector(`[part=${part}]`)).color",
            part,
        )
        assert color == "rgb(1, 2, 3)", part
    parts = page.evaluate(
        "[...document.querySelector('wattfare-connect').shadowRoot.querySelectorAll('[part]')]"
        ".map((e) => e.getAttribute('part'))"
    )
    assert {"button", "bar", "label", "disconnect"} <= set(parts)
    # A new base-url makes a new client, which reads the status again.
    element = page.locator("wattfare-connect")
    before = changes(page)
    element.evaluate("element => element.setAttribute('base-url', '/wattfare/')")
    assert wait_for_change(page, before)["monthlyUsd"] == 6.4
    assert element.evaluate("element => element.wattfare.baseURL") == demo.base_url + MOUNT
    expect(live).to_have_text("$6.40 left of $6.40")
    assert visit.console.errors == []


def test_a_revoke_elsewhere_shows_when_the_user_comes_back_to_the_tab(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    connect_through_popup(page, "5")
    # Revoked somewhere else (the consent domain's dashboard, another tab): this page is not told.
    token = httpx2.post(
        f"{demo.base_url}{MOUNT}/api/v1/sessions",
        json={"appUserId": visit.user},
        headers={"authorization": f"Bearer {demo.keys.secret_key}"},
    ).json()["token"]
    revoked = httpx2.delete(f"{demo.base_url}{MOUNT}/api/v1/connections", headers={"authorization": f"Bearer {token}"})
    assert revoked.status_code == 204
    expect(budget_label(page)).to_have_text("$5.00 left of $5.00")
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the user returns to the tab
    expect(connect_button(page)).to_be_visible()
    expect(budget_label(page)).to_have_text("")
    assert page.url == demo.base_url + "/", "no reload"
    assert visit.console.errors == []
