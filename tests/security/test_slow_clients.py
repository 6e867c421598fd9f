"""Slow and abusive clients are bounded, over real sockets to real uvicorn servers.

A body sent one byte at a time is cut at the body deadline (408, connection closed) however
long it would have trickled; unauthenticated work has a concurrency cap answered with 429;
sign-ins are throttled per client address and per account before any password is hashed.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx2

from tests.core.conftest import make_embed, running
from tests.proxy.conftest import CHAT, MOUNT, running_proxy
from wattfare_embed import AppKeys
from wattfare_embed.consent._protocol import sign_webhook, webhook_signing_key
from wattfare_embed.testing.waiting import poll

from .conftest import PASSWORD, Domain, json_of, nothing_held_or_charged, raw_http, serving_domain, status_of

DEADLINE = 0.6  # the body deadline these servers run with
# A trickled body would take 30 s; anything well below that proves the cut, with room for a busy machine.
CUT_WITHIN = 10.0
TRICKLE = b"x" * 300


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def head(method: str, path: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_cut(answer: bytes, took: float) -> None:
    assert status_of(answer) == 408, answer
    assert took < CUT_WITHIN, f"cut only after {took:.1f} s"
    assert b"connection: close" in answer.lower()


async def test_a_proxy_body_sent_a_byte_at_a_time_is_cut_at_the_deadline(keys: AppKeys, sqlite_url: str) -> None:
    async with running_proxy(keys, sqlite_url, body_timeout_seconds=DEADLINE) as stack:
        await stack.connect("ada")
        headers = {**stack.headers("ada"), "content-type": "application/json"}
        request = head("POST", MOUNT + CHAT, headers, len(TRICKLE))

        answer, took = await raw_http(port_of(stack.base_url), request, trickle=TRICKLE)

        assert_cut(answer, took)
        assert json_of(answer)["error"]["code"] == "invalid_request"
        assert "0.6 seconds" in json_of(answer)["error"]["message"]
        await nothing_held_or_charged(stack, "ada")


async def test_the_embeds_json_routes_cut_a_slow_body(keys: AppKeys, sqlite_url: str) -> None:
    async with running(make_embed(keys, sqlite_url, body_timeout_seconds=DEADLINE)) as site:
        token = await site.session("ada")
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        for path in ("/api/v1/consent", "/api/v1/connections"):
            answer, took = await raw_http(
                port_of(site.base_url), head("POST", MOUNT + path, headers, len(TRICKLE)), trickle=TRICKLE
            )
            assert_cut(answer, took)
        assert await site.count_consent_requests() == 0


def _signed(keys: AppKeys, event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"id": event_id, "type": "grant.revoked", "created": int(time.time()), "data": {"grant_id": "grt_none"}}
    ).encode()
    signature = sign_webhook(webhook_signing_key(keys.secret_key), int(time.time()), body)
    return body, {"content-type": "application/json", "wattfare-signature": signature}


async def test_slow_webhooks_hold_at_most_the_cap_and_the_next_one_is_told_to_retry(
    keys: AppKeys, sqlite_url: str
) -> None:
    embed = make_embed(keys, sqlite_url, body_timeout_seconds=3.0, max_concurrent_webhooks=2)
    async with running(embed) as site:
        port = port_of(site.base_url)
        slow = [
            asyncio.ensure_future(
                raw_http(
                    port, head("POST", MOUNT + "/webhooks", {"content-type": "application/json"}, 300), trickle=TRICKLE
                )
            )
            for _ in range(2)
        ]
        body, headers = _signed(keys, "evt_after_the_slow_ones")

        async def turned_away() -> httpx2.Response | None:
            response = await site.browser.post("/webhooks", content=b"{}", headers={"content-type": "application/json"})
            return response if response.status_code == 429 else None

        refused = await poll(turned_away, what="a webhook turned away while two slow ones hold the gate")
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["retry-after"] == "1" and refused.headers["x-should-retry"] == "true"

        for answer, took in await asyncio.gather(*slow):
            assert status_of(answer) == 408 and took < CUT_WITHIN
        # The gate is free again: a genuine delivery is read, verified and applied.
        accepted = await site.browser.post("/webhooks", content=body, headers=headers)
        assert accepted.status_code == 200 and accepted.json() == {"received": True, "applied": False}


async def test_a_slow_sign_in_form_is_cut_at_the_deadline(sqlite_url: str) -> None:
    async with serving_domain(sqlite_url, body_timeout_seconds=DEADLINE) as domain:
        request = head("POST", "/login", {"content-type": "application/x-www-form-urlencoded"}, len(TRICKLE))
        answer, took = await raw_http(domain.port, request, trickle=TRICKLE)
        assert_cut(answer, took)
        assert b"did not arrive within 0.6 seconds" in answer


async def _attempts(domain: Domain, http: httpx2.AsyncClient, count: int, **options: Any) -> list[httpx2.Response]:
    return [await domain.sign_in(http, "wrong password", **options) for _ in range(count)]


async def test_sign_ins_from_one_address_are_throttled_before_any_password_is_checked(sqlite_url: str) -> None:
    async with (
        serving_domain(sqlite_url, login_attempts_per_address=3, login_failures_per_account=100) as domain,
        httpx2.AsyncClient() as http,
    ):
        wrong = await _attempts(domain, http, 3, client="10.0.0.1")
        assert [response.status_code for response in wrong] == [401, 401, 401]

        throttled = await domain.sign_in(http, PASSWORD, client="10.0.0.1")  # even the right password waits
        assert throttled.status_code == 429 and "Too many sign-in attempts" in throttled.text
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert "wcd_session" not in throttled.cookies

        elsewhere = await domain.sign_in(http, PASSWORD, client="10.0.0.2")
        assert elsewhere.status_code == 303 and elsewhere.cookies.get("wcd_session")


async def test_failed_sign_ins_to_one_account_are_throttled_from_every_address(sqlite_url: str) -> None:
    async with (
        serving_domain(sqlite_url, login_attempts_per_address=100, login_failures_per_account=3) as domain,
        httpx2.AsyncClient() as http,
    ):
        other = "bea@example.com"
        await domain.domain.add_user(other, PASSWORD)
        for index in range(3):
            assert (await domain.sign_in(http, "guess", client=f"10.1.0.{index}")).status_code == 401

        locked = await domain.sign_in(http, PASSWORD, client="10.1.0.99")
        assert locked.status_code == 429 and "Try again in" in locked.text
        assert int(locked.headers["retry-after"]) > 60  # the account's window is 15 minutes
        assert (await domain.sign_in(http, PASSWORD, email=other, client="10.1.0.99")).status_code == 303


async def test_a_successful_sign_in_clears_the_accounts_failures(sqlite_url: str) -> None:
    async with (
        serving_domain(sqlite_url, login_attempts_per_address=100, login_failures_per_account=3) as domain,
        httpx2.AsyncClient() as http,
    ):
        await _attempts(domain, http, 2)
        assert (await domain.sign_in(http, PASSWORD)).status_code == 303
        await _attempts(domain, http, 2)
        assert (await domain.sign_in(http, PASSWORD)).status_code == 303, "two failures, not four"


async def test_password_checks_at_once_are_capped_and_the_rest_told_to_retry(sqlite_url: str) -> None:
    async with (
        serving_domain(sqlite_url, max_concurrent_logins=1, login_attempts_per_address=100) as domain,
        httpx2.AsyncClient() as http,
    ):
        forms = [await domain.login_form(http) for _ in range(8)]
        answers = await asyncio.gather(
            *(
                http.post(
                    domain.url + "/login",
                    data={**fields, "email": f"user{index}@example.com", "password": "wrong"},
                    headers={"x-forwarded-for": f"10.2.0.{index}"},
                )
                for index, fields in enumerate(forms)
            )
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert set(statuses) <= {401, 503} and 401 in statuses and 503 in statuses, statuses
        for busy in (answer for answer in answers if answer.status_code == 503):
            assert busy.headers["retry-after"] == "1" and "Try again in a moment" in busy.text
