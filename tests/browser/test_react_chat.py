"""The React example (``example_apps/react_chat``: Vite, ``useChat``, ``useWattfare``, FastAPI) in a real
Chromium: not connected → Connect, a streamed reply, the bar falling by its cost and never dipping,
over the cap → the raise-cap path, disconnect."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Browser, Page, expect

from example_apps.react_chat.app import create_app
from tests.node_toolchain import make
from wattfare_embed import AppKeys, DevConsent, Wattfare, new_key_pair
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve

from .conftest import IMAGES, MOUNT, Console

pytestmark = pytest.mark.browser

MODEL = "acme/pricey-demo"  # a dollar a reply, so the bar moves visibly
REPLY = "Here is a short streamed reply from the fake model."


@dataclass
class ReactChat:
    base_url: str
    keys: AppKeys

    def status(self, user: str) -> dict[str, Any]:
        response = httpx2.get(
            f"{self.base_url}{MOUNT}/api/v1/status",
            params={"appUserId": user},
            headers={"authorization": f"Bearer {self.keys.secret_key}"},
        )
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status


def _pricey(fake: FakeOpenRouter) -> dict[str, Any]:
    model: dict[str, Any] = copy.deepcopy(next(m for m in fake.models if m["id"] == "openai/gpt-4o-mini"))
    model.update(id=MODEL, canonical_slug=MODEL, name="Acme: Pricey Demo")
    model["pricing"] = {"prompt": "0.001", "completion": "0.1", "request": "0", "image": "0"}
    return model


@pytest.fixture(scope="module")
def react_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReactChat]:
    make("react-chat-build")  # the example installs the packed js/ tarball, then vite builds it
    fake = FakeOpenRouter(reply_text=REPLY, chunk_delay=0.08)
    fake.models.append(_pricey(fake))
    keys = new_key_pair()
    database = tmp_path_factory.mktemp("react-chat") / "wattfare.db"
    with serve(fake) as upstream:
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=f"sqlite+aiosqlite:///{database}",
            consent=DevConsent(auto_approve=False),
            resolve_user=lambda request: request.cookies.get("demo_user"),
            app_name="Acme Chat",
            upstream_url=upstream + "/api/v1",
            # The pricey demo model's 20-token reply holds $2, above the default per-request ceiling.
            max_request_hold_usd=None,
        )
        with serve(create_app(wf, model=MODEL)) as base_url:
            yield ReactChat(base_url, keys)


def approve_in_popup(page: Page, click: Any, cap: str | None) -> None:
    with page.expect_popup() as opened:
        click()
    popup = opened.value
    expect(popup.get_by_role("heading", name="Allow Acme Chat to charge AI to your budget?")).to_be_visible()
    if cap is not None:
        popup.get_by_label("Monthly cap").fill(cap)
    popup.get_by_role("button", name="Approve").click()
    if not popup.is_closed():
        popup.wait_for_event("close")


def bar_value(page: Page) -> float:
    value: float = page.get_by_role("progressbar", name="AI budget left").evaluate("bar => bar.value")
    return value


def test_the_react_example_whole_flow(browser: Browser, react_chat: ReactChat) -> None:
    user = "grace"
    context = browser.new_context(viewport={"width": 960, "height": 640})
    context.set_default_timeout(15_000)
    context.add_cookies([{"name": "demo_user", "value": user, "url": react_chat.base_url}])
    console = Console()
    console.watch(context)
    page = context.new_page()
    try:
        page.goto(react_chat.base_url + "/")
        header = page.locator("header")
        expect(header.get_by_role("button", name="Connect AI budget")).to_be_visible()

        # Not connected: useChat's error is our typed error, shown with user copy and a Connect button.
        page.get_by_label("Message").fill("Hello?")
        page.get_by_role("button", name="Send").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Connect your AI budget to continue.")
        approve_in_popup(page, alert.get_by_role("button", name="Connect AI budget").click, "2.50")
        expect(header).to_contain_text("$2.50 left of $2.50")
        expect(alert).to_be_hidden()  # the old prompt goes once connected

        # A streamed reply. While it streams (money held) the bar stays; after, it falls by the cost.
        page.evaluate(
            """() => {
              window.__bar = [];
              const bar = () => document.querySelector('progress[aria-label="AI budget left"]');
              window.__sampler = setInterval(() => { if (bar()) window.__bar.push(bar().value); }, 15);
            }"""
        )
        page.get_by_label("Message").fill("Say hello")
        page.get_by_role("button", name="Send").click()
        reply = page.locator(".msg.assistant").last
        expect(reply).to_contain_text("Here is a short")
        assert REPLY not in reply.inner_text(), "still streaming"
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # a re-read mid-reply
        expect(reply).to_contain_text(REPLY)
        expect(reply.locator(".cost")).to_be_visible()
        expect(header).not_to_contain_text("$2.50 left of $2.50")
        samples: list[float] = page.evaluate(
            """() => {
              clearInterval(window.__sampler);
              // One last sample now: the header may have changed within the sampler's 15 ms.
              const bar = document.querySelector('progress[aria-label="AI budget left"]');
              if (bar) window.__bar.push(bar.value);
              return window.__bar;
            }"""
        )
        server = react_chat.status(user)
        final = bar_value(page)
        assert final == pytest.approx(2.5 - server["spentUsd"], abs=1e-9)
        cost = float(reply.locator(".cost").inner_text().removeprefix("cost $"))
        assert cost == pytest.approx(server["spentUsd"], abs=1e-4), "the bar fell by the reply's cost"
        assert samples[0] == 2.5 and samples[-1] == final
        assert samples == sorted(samples, reverse=True) and set(samples) == {2.5, final}, "never dipped"
        page.screenshot(path=str(IMAGES / "react-chat.png"))

        # Over the cap: the next message is refused before the model; the raise-cap path approves more.
        page.get_by_label("Message").fill("And again")
        page.get_by_role("button", name="Send").click()
        expect(alert).to_contain_text("You have used this month's AI budget.")
        raise_cap = alert.get_by_role("button", name="Raise my cap to $5.00")
        approve_in_popup(page, raise_cap.click, None)
        expect(header).to_contain_text(" left of $5.00")
        expect(alert).to_be_hidden()
        assert react_chat.status(user)["monthlyUsd"] == 5

        # Disconnect: back to the Connect button, revoked on the server.
        header.get_by_role("button", name="Disconnect").click()
        expect(header.get_by_role("button", name="Connect AI budget")).to_be_visible()
        assert react_chat.status(user)["status"] == "revoked"
        assert console.errors == []
    finally:
        context.close()


def test_the_built_example_installed_the_packed_npm_package() -> None:
    installed = Path(__file__).resolve().parents[2] / "example_apps" / "react_chat" / "web" / "node_modules"
    manifest = (installed / "wattfare-embed" / "package.json").read_text()
    assert '"./react"' in manifest
    assert not (installed / "wattfare-embed" / "src").exists(), "the tarball, not a link to the sources"
