"""One user id means one user: what a header can carry and what the store keys on never differ."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.core.conftest import Harness
from tests.proxy.conftest import CHAT, MOUNT, Proxied, error_of
from wattfare_embed import InvalidRequestError, user_id_header
from wattfare_embed.cli import main

from .conftest import raw_http, status_of

EDGE_WHITESPACE = [" wsv", "wsv ", "\twsv", "wsv\u00a0", "\u3000wsv", "\u2003wsv"]
TRICKY_BUT_VALID = ["usér 42", "a%20b", "日本語", "a b", "emoji 🙂", "+-_.~!$&'()*,;=:@/?#[]"]


async def test_an_id_with_whitespace_at_either_end_is_refused_at_every_entry_point(
    site: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATTFARE_SECRET_KEY", site.keys.secret_key)
    monkeypatch.setenv("WATTFARE_PUBLISHABLE_KEY", site.keys.publishable_key)
    for user in EDGE_WHITESPACE:
        response = await site.browser.post("/api/v1/sessions", json={"appUserId": user}, headers=site.server_auth)
        message = response.json()["error"]["message"]
        assert response.status_code == 400 and ("whitespace" in message or "control" in message), message
        for call in (site.embed.create_session, site.embed.status, site.embed.disconnect):
            with pytest.raises(InvalidRequestError):
                await call(user)
        with pytest.raises(InvalidRequestError):
            site.embed.user(user)
        with pytest.raises(InvalidRequestError):
            user_id_header(user)
    for arguments in (["status", " wsv"], ["usage", "--user", "wsv "]):
        assert await asyncio.to_thread(main, [*arguments, "--database-url", site.embed.settings.database_url]) == 2
        assert "whitespace" in capsys.readouterr().err
    assert await site.count_consent_requests() == 0


async def test_a_percent_encoded_edge_space_cannot_name_a_second_user(proxied: Proxied) -> None:
    """HTTP strips the space from `X-Wattfare-User:  wsv`; encoded, it would reach the store as " wsv"."""
    await proxied.connect("wsv")
    for encoded in ("%20wsv", "wsv%20", "%09wsv", "%C2%A0wsv"):
        headers = {
            **proxied.headers(encoded),
            "x-wattfare-user-encoding": "percent",
            "content-type": "application/json",
        }
        response = await proxied.http.post(CHAT, json=proxied.chat_body(max_tokens=20), headers=headers)
        assert error_of(response) == (400, "invalid_request")
    assert await proxied.ledger("wsv") == [] and proxied.upstream_calls() == []


async def test_a_header_with_spaces_around_the_id_charges_exactly_that_id(proxied: Proxied) -> None:
    await proxied.connect("wsv")
    body = json.dumps(proxied.chat_body(max_tokens=20)).encode()
    request = (
        f"POST {MOUNT}{CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n"
        f"authorization: Bearer {proxied.keys.secret_key}\r\ncontent-type: application/json\r\n"
        f"x-wattfare-user: \t wsv \t\r\ncontent-length: {len(body)}\r\n\r\n"  # spaces around a value are not part of it
    ).encode()
    answer, _ = await raw_http(int(proxied.base_url.rsplit(":", 1)[1]), request + body)
    assert status_of(answer) == 200, answer
    [row] = await proxied.settled("wsv", 1)
    assert row.app_user_id == "wsv"


async def test_the_public_header_helper_names_exactly_the_stored_user(proxied: Proxied) -> None:
    for user in TRICKY_BUT_VALID:
        await proxied.connect(user)
        headers = {**proxied.headers(None), **user_id_header(user), "content-type": "application/json"}
        response = await proxied.http.post(CHAT, json=proxied.chat_body(max_tokens=20), headers=headers)
        assert response.status_code == 200, (user, response.text)
        [row] = await proxied.settled(user, 1)
        assert row.app_user_id == user
    assert user_id_header("plain") == {"X-Wattfare-User": "plain"}
    assert user_id_header("a%b") == {"X-Wattfare-User": "a%25b", "X-Wattfare-User-Encoding": "percent"}
