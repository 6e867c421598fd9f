"""``make demo-hosted``: the demo chat with the reference consent domain on a second port, as a subprocess."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from tests.demo_process import running_demo_process
from wattfare_embed.testing.live_server import free_port

from .conftest import MOUNT, form


@dataclass
class HostedDemo:
    process: subprocess.Popen[str]
    url: str
    domain_url: str
    output: list[str] = field(default_factory=list)


@contextmanager
def running_hosted_demo(cwd: Path) -> Iterator[HostedDemo]:
    port, fake_port, domain_port = free_port(), free_port(), free_port()
    arguments = ("--consent", "hosted", "--fake-port", str(fake_port), "--domain-port", str(domain_port))
    with running_demo_process(cwd, port, *arguments) as demo:
        yield HostedDemo(demo.process, demo.url, f"http://127.0.0.1:{domain_port}", demo.output)


def _credentials(demo: HostedDemo) -> tuple[str, str]:
    found = re.search(r"Sign in there as (\S+) with the password (\S+)\.", "".join(demo.output))
    assert found, "".join(demo.output)
    return found.group(1), found.group(2)


def _connect_and_chat(demo: HostedDemo, name: str) -> httpx2.Client:
    email, password = _credentials(demo)
    browser = httpx2.Client(timeout=20)
    assert browser.post(demo.url + "/login", json={"name": name}).status_code == 200
    token = browser.post(demo.url + f"{MOUNT}/session").json()["token"]
    consent = browser.post(
        demo.url + f"{MOUNT}/api/v1/consent", json={"monthlyUsd": 5}, headers={"authorization": f"Bearer {token}"}
    )
    url = consent.json()["url"]
    assert url.startswith(demo.domain_url + "/authorize?"), "the consent screen is on the second origin"
    login = browser.get(demo.domain_url + "/login")
    fields = {**form(login.text, "/login").fields, "email": email, "password": password}
    assert browser.post(demo.domain_url + "/login", data=fields).status_code == 303
    page = browser.get(url)
    assert page.status_code == 200 and "Allow Acme Chat to spend" in page.text
    approve = {**form(page.text, "/authorize").fields, "decision": "approve", "monthly_usd": "4"}
    approved = browser.post(demo.domain_url + "/authorize", data=approve)
    assert approved.headers["location"].startswith(demo.url + f"{MOUNT}/callback?")
    assert "Connected" in browser.get(approved.headers["location"]).text
    with browser.stream("POST", demo.url + "/chat", json={"message": "Say hello"}) as reply:
        assert reply.status_code == 200
        reply.read()
    return browser


def test_make_demo_hosted_connects_through_the_domain_and_a_dashboard_revoke_stops_the_chat(tmp_path: Path) -> None:
    with running_hosted_demo(tmp_path) as demo:
        browser = _connect_and_chat(demo, "alice")
        dashboard = browser.get(demo.domain_url + "/dashboard")
        revoke = next(f for f in [form(dashboard.text, "/revoke")] if f.action.startswith("/dashboard/grants/"))
        assert browser.post(demo.domain_url + revoke.action, data=revoke.fields).status_code == 303
        refused = browser.post(demo.url + "/chat", json={"message": "again"})
        assert refused.status_code == 402 and refused.json()["error"]["code"] == "not_connected"
        browser.close()
        keys = (tmp_path / ".demo" / "hosted-keys.env").read_text()
    assert demo.process.returncode == 0 and "Traceback" not in "".join(demo.output)
    with running_hosted_demo(tmp_path) as again:  # ports change: the app is registered anew
        _connect_and_chat(again, "bob").close()
    assert (tmp_path / ".demo" / "hosted-keys.env").read_text() != keys
