"""``make demo``'s runner, as a subprocess in a fresh directory: keys, SQLite, the fake upstream, the page."""

from __future__ import annotations

import re
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

from tests.demo_process import running_demo_process
from wattfare_embed.testing.live_server import free_port

from .conftest import MOUNT, bearer, sse_payloads


@dataclass
class Demo:
    process: subprocess.Popen[str]
    cwd: Path
    url: str
    fake_port: int
    output: list[str] = field(default_factory=list)

    def keys(self) -> dict[str, str]:
        text = (self.cwd / ".demo" / "keys.env").read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@contextmanager
def running_demo(cwd: Path) -> Iterator[Demo]:
    """``make demo`` in ``cwd``; stopped after."""
    port, fake_port = free_port(), free_port()
    with running_demo_process(cwd, port, "--fake-port", str(fake_port)) as demo:
        yield Demo(demo.process, cwd, demo.url, fake_port, demo.output)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo process in a fresh directory, shared by the tests of this module."""
    with running_demo(tmp_path_factory.mktemp("fresh-clone")) as running:
        yield running


def test_make_demo_serves_the_chat_page_with_fresh_test_keys_and_the_fake_upstream(demo: Demo) -> None:
    printed = "".join(demo.output)
    assert f"Acme Chat is running on {demo.url}" in printed
    assert "Replies are simulated" in printed and str(demo.fake_port) in printed

    keys_file = demo.cwd / ".demo" / "keys.env"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600, "the secret key file is private"
    keys = demo.keys()
    assert keys["WATTFARE_SECRET_KEY"].startswith("sk_test_")
    assert keys["WATTFARE_PUBLISHABLE_KEY"].startswith("pk_test_")
    assert (demo.cwd / ".demo" / "wattfare.db").exists()

    page = httpx2.get(demo.url + "/")
    assert page.status_code == 200
    assert keys["WATTFARE_PUBLISHABLE_KEY"] in page.text and "wattfare-connect" in page.text
    assert keys["WATTFARE_SECRET_KEY"] not in page.text
    assert "const simulated = true;" in page.text, "without OPENROUTER_API_KEY the page says replies are simulated"

    fake = httpx2.get(f"http://127.0.0.1:{demo.fake_port}/api/v1/models")
    assert fake.status_code == 200
    assert any(model["id"] == "openai/gpt-4o-mini" for model in fake.json()["data"])

    script = httpx2.get(demo.url + f"{MOUNT}/wattfare.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")


def test_make_demo_whole_flow_sign_in_approve_chat_disconnect(demo: Demo) -> None:
    with httpx2.Client(base_url=demo.url, timeout=20) as browser:
        assert browser.post("/login", json={"name": "alice"}).status_code == 200
        token = browser.post(f"{MOUNT}/session").json()["token"]
        consent = browser.post(f"{MOUNT}/api/v1/consent", json={"monthlyUsd": 5}, headers=bearer(token))
        # The demo shows the consent screen (no auto-approve): read its form and press Approve.
        page = browser.get(consent.json()["url"])
        assert page.status_code == 200 and "Approve" in page.text
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        state = re.search(r'name="state" value="([^"]+)"', page.text)
        assert action and state and action.group(1) == f"{MOUNT}/dev/consent"
        approved = browser.post(
            action.group(1), data={"state": state.group(1), "decision": "approve", "monthlyUsd": "4"}
        )
        assert approved.status_code == 303
        assert approved.headers["location"].startswith(f"{demo.url}{MOUNT}/callback?")
        assert browser.get(approved.headers["location"]).status_code == 200

        with browser.stream("POST", "/chat", json={"message": "Say hello"}) as reply:
            assert reply.status_code == 200
            events = sse_payloads(reply.read().decode())
        assert events[-1] == {"done": True}
        assert "".join(str(event.get("delta", "")) for event in events)

        status = browser.get(f"{MOUNT}/api/v1/connections", headers=bearer(token)).json()
        assert (status["connected"], status["monthlyUsd"]) == (True, 4) and status["spentUsd"] > 0

        assert browser.delete(f"{MOUNT}/api/v1/connections", headers=bearer(token)).status_code == 204
        gone = browser.post("/chat", json={"message": "again"})
        assert gone.status_code == 402 and gone.json()["error"]["code"] == "not_connected"


def test_make_demo_keeps_its_keys_and_database_across_restarts(tmp_path: Path) -> None:
    with running_demo(tmp_path) as first:
        keys = first.keys()
        with httpx2.Client(base_url=first.url) as browser:
            browser.post("/login", json={"name": "bob"})
            token = browser.post(f"{MOUNT}/session").json()["token"]
    assert first.process.returncode == 0, "Ctrl-C stops the demo cleanly"
    assert "Traceback" not in "".join(first.output)
    assert (tmp_path / ".demo" / "wattfare.db").exists()
    with running_demo(tmp_path) as second:
        assert second.keys() == keys, "the keys file is reused, not regenerated"
        # A session minted by the first run still verifies: same secret key, same app.
        answer = httpx2.get(second.url + f"{MOUNT}/api/v1/connections", headers=bearer(token))
        assert answer.status_code == 200 and answer.json()["appUserId"] == "bob"
