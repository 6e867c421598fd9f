"""`createWattfare()` itself in a real Chromium: session sources, token caching, listeners, typed errors."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import MOUNT, Demo, Visit

pytestmark = pytest.mark.browser


def run(page: Page, body: str, arg: Any = None) -> Any:
    """Run ``body`` (an async function body with `createWattfare`, `WattfareError`, `pk` and `arg` in scope)."""
    script = f"""async ({{ pk, arg }}) => {{
      const {{ createWattfare, WattfareError }} = await import("{MOUNT}/wattfare.js");
      {body}
    }}"""
    publishable: str = page.evaluate("document.querySelector('wattfare-connect').getAttribute('publishable-key')")
    return page.evaluate(script, {"pk": publishable, "arg": arg})


def home(visit: Visit, demo: Demo, path: str = "/") -> Page:
    visit.page.goto(demo.base_url + path)
    expect(visit.page.get_by_role("button", name="Connect AI budget")).to_be_visible()
    return visit.page


def test_a_session_function_is_called_once_and_listeners_hear_every_read(visit: Visit, demo: Demo) -> None:
    page = home(visit, demo)
    result = run(
        page,
        """
        let mints = 0;
        const wf = createWattfare({ publishableKey: pk, session: async () => {
          mints += 1;
          const response = await fetch("/wattfare/session", { method: "POST" });
          return (await response.json()).token;
        } });
        const heard = [];
        const stop = wf.subscribe((status) => heard.push(status.status));
        const first = await wf.status();
        await wf.refresh();
        stop();
        await wf.refresh();
        const late = [];
        wf.onChange((status) => late.push(status.connected));  // told the current status at once
        return { mints, heard, late, first, current: wf.current, base: wf.baseURL };
        """,
    )
    assert result["mints"] == 1, "the token is cached between calls"
    assert result["heard"] == ["not_connected", "not_connected"]
    assert result["late"] == [False]
    assert result["first"]["appUserId"] == visit.user
    assert set(result["first"]) == {
        "connected",
        "status",
        "appUserId",
        "monthlyUsd",
        "spentUsd",
        "heldUsd",
        "remainingUsd",
        "availableUsd",
        "periodStart",
        "periodEnd",
        "authority",
    }
    assert result["current"] == result["first"]
    assert result["base"] == demo.base_url + MOUNT, "baseURL defaults to where the module was loaded from"
    assert visit.console.errors == []


def test_a_route_answering_a_raw_token_and_a_token_near_expiry(visit: Visit, demo: Demo) -> None:
    page = home(visit, demo)
    result = run(
        page,
        """
        const raw = createWattfare({ publishableKey: pk, session: "/raw-session", baseURL: "/wattfare/" });
        const viaRoute = await raw.status();
        let mints = 0;
        const short = createWattfare({ publishableKey: pk, session: async () => {
          mints += 1;
          const response = await fetch("/wattfare/session", { method: "POST" });
          const { token } = await response.json();
          return { token, expiresAt: Date.now() / 1000 + 20 };  // inside the 30 s margin: never reused
        } });
        await short.status();
        await short.status();
        return { user: viaRoute.appUserId, mints };
        """,
    )
    assert result == {"user": visit.user, "mints": 2}
    assert visit.console.errors == []


def test_errors_are_wattfare_error_objects_with_code_and_status(visit: Visit, demo: Demo) -> None:
    page = home(visit, demo)
    result = run(
        page,
        """
        const caught = async (action) => {
          try { await action(); return null; } catch (e) {
            return { isError: e instanceof WattfareError && e instanceof Error, name: e.name, code: e.code,
                     status: e.status, json: e.toJSON() };
          }
        };
        let mints = 0;
        const forged = createWattfare({ publishableKey: pk, session: () => { mints += 1; return "not-a-token"; } });
        const otherApp = "x." + btoa(JSON.stringify({ app: "someoneelse" })) + ".y";
        return {
          badKey: await caught(() => createWattfare({ publishableKey: "sk_test_abc_def", session: "/s" })),
          // Without a session a client only asks for one-time grants: reading a connection is refused.
          noSession: await caught(() => createWattfare({ publishableKey: pk }).status()),
          badToken: await caught(() => forged.status()),
          mints,
          otherApp: await caught(() => createWattfare({ publishableKey: pk, session: () => otherApp }).status()),
        };
        """,
    )
    assert result["badKey"]["isError"] and result["badKey"]["code"] == "invalid_request"
    assert result["badKey"]["name"] == "WattfareError"
    assert result["noSession"]["code"] == "invalid_request"
    bad = result["badToken"]
    assert bad["isError"] and bad["code"] == "auth" and bad["status"] == 401
    assert bad["json"]["error"]["code"] == "auth" and bad["json"]["error"]["message"]
    assert result["mints"] == 2, "a refused token is replaced once, then the error is thrown"
    assert result["otherApp"]["code"] == "auth" and "another app" in result["otherApp"]["json"]["error"]["message"]


def test_coming_back_from_a_denied_redirect_cleans_the_address(visit: Visit, demo: Demo) -> None:
    page = home(visit, demo, "/?tab=chat&wattfare=denied")
    assert page.url == demo.base_url + "/?tab=chat"
    assert page.evaluate("document.querySelector('wattfare-connect').wattfare.redirectResult") == "denied"
    expect(page.locator("wattfare-connect [part=label]")).to_have_text("")
    assert visit.console.errors == []


def test_without_a_signed_in_user_the_element_says_so(browser: Browser, demo: Demo) -> None:
    context = browser.new_context()  # no login cookie: the app's own /session answers 401
    try:
        page = context.new_page()
        page.goto(demo.base_url + "/")
        button = page.get_by_role("button", name="Connect AI budget")
        expect(button).to_be_visible()
        # Copy for the person using the app; the developer's message goes to the console.
        expect(page.locator("wattfare-connect [part=label]")).to_have_text("Please sign in again, then try once more.")
        page.evaluate(
            "window.__failed = null; document.querySelector('wattfare-connect')"
            ".addEventListener('wattfare-error', (e) => { window.__failed = e.detail.code; })"
        )
        with page.expect_popup() as opened:
            button.click()
        popup = opened.value
        page.wait_for_function("window.__failed !== null")
        assert page.evaluate("window.__failed") == "auth"
        if not popup.is_closed():
            popup.wait_for_event("close")
        assert len(context.pages) == 1, "the blank popup was closed again"
    finally:
        context.close()
