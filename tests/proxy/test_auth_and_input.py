"""Who may call, and with what: typed errors before anything is reserved or sent upstream."""

from __future__ import annotations

import time
from typing import Any

import pytest

from wattfare_embed import new_key_pair
from wattfare_embed.store import NewConnection
from wattfare_embed.tokens import SessionTokens

from .conftest import MINI, Proxied, error_of, running_proxy


async def _assert_nothing_happened(proxy: Proxied, user: str) -> None:
    assert proxy.upstream_calls() == []
    assert await proxy.ledger(user) == []
    assert (await proxy.connection(user)).reserved == 0


async def test_missing_or_wrong_secret_key_is_refused(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    body = {"model": MINI, "messages": [{"role": "user", "content": "hi"}]}
    other_app = new_key_pair()

    missing = await lite.http.post("/api/v1/chat/completions", json=body, headers={"x-wattfare-user": user_id})
    wrong = await lite.http.post(
        "/api/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {other_app.secret_key}", "x-wattfare-user": user_id},
    )
    not_bearer = await lite.http.post(
        "/api/v1/chat/completions",
        json=body,
        headers={"authorization": f"Basic {lite.keys.secret_key}", "x-wattfare-user": user_id},
    )

    for response in (missing, wrong, not_bearer):
        assert error_of(response) == (401, "auth")
        assert response.headers["x-should-retry"] == "false"
    await _assert_nothing_happened(lite, user_id)


async def test_secret_key_without_a_user_header_is_not_connected(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    response = await lite.chat(None)

    assert error_of(response) == (402, "not_connected")
    assert "X-Wattfare-User" in response.json()["error"]["message"]
    await _assert_nothing_happened(lite, user_id)


async def test_session_token_is_refused_while_browser_inference_is_off(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    session = await lite.wf.create_session(user_id)

    response = await lite.http.post(
        "/api/v1/chat/completions",
        json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {session.token}"},
    )

    assert error_of(response) == (401, "auth")
    assert "allow_browser_inference" in response.json()["error"]["message"]
    await _assert_nothing_happened(lite, user_id)


async def test_session_token_spends_for_its_own_user_when_browser_inference_is_on(
    keys: Any, sqlite_url: str, user_id: str
) -> None:
    async with running_proxy(keys, sqlite_url, allow_browser_inference=True) as proxy:
        await proxy.connect(user_id)
        await proxy.connect("someone-else")
        session = await proxy.wf.create_session(user_id)

        response = await proxy.http.post(
            "/api/v1/chat/completions",
            json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
            # The header cannot make a browser spend someone else's budget.
            headers={"authorization": f"Bearer {session.token}", "x-wattfare-user": "someone-else"},
        )

        assert response.status_code == 200, response.text
        assert len(await proxy.settled(user_id, 1)) == 1
        assert await proxy.ledger("someone-else") == []


@pytest.mark.parametrize("which", ["forged", "expired", "other-app"])
async def test_bad_session_tokens_are_refused(keys: Any, sqlite_url: str, user_id: str, which: str) -> None:
    async with running_proxy(keys, sqlite_url, allow_browser_inference=True) as proxy:
        await proxy.connect(user_id)
        if which == "forged":
            token = (await proxy.wf.create_session(user_id)).token[:-4] + "AAAA"
        elif which == "expired":
            token, _ = SessionTokens(keys.secret_key, keys.app_id, ttl_seconds=-60).mint(user_id)
        else:
            other = new_key_pair()
            token, _ = SessionTokens(other.secret_key, other.app_id).mint(user_id)

        response = await proxy.http.post(
            "/api/v1/chat/completions",
            json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {token}"},
        )

        assert error_of(response) == (401, "auth")
        await _assert_nothing_happened(proxy, user_id)


_HI = '"messages": [{"role": "user", "content": "hi"}]'
_MINI = '"model": "openai/gpt-4o-mini"'


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b'{"model": "openai/gpt-4o-mini", "messages": [', "JSON"),
        (b"\xff\xfe not utf-8", "JSON"),
        (b'["a", "list"]', "object"),
        (f"{{{_HI}}}".encode(), "model"),
        (f'{{"model": 42, {_HI}}}'.encode(), "model"),
        (f"{{{_MINI}}}".encode(), "messages"),
        (f'{{{_MINI}, "messages": "hi"}}'.encode(), "messages"),
        (f'{{{_MINI}, "messages": []}}'.encode(), "messages"),
        (f'{{{_MINI}, {_HI}, "stream": "yes"}}'.encode(), "stream"),
        (f'{{{_MINI}, {_HI}, "max_tokens": "9"}}'.encode(), "max_tokens"),
        (f'{{{_MINI}, {_HI}, "max_tokens": -1}}'.encode(), "max_tokens"),
        (f'{{{_MINI}, {_HI}, "max_completion_tokens": 2.5}}'.encode(), "max_completion_tokens"),
        (f'{{{_MINI}, {_HI}, "n": 0}}'.encode(), "`n`"),
        (f'{{{_MINI}, {_HI}, "stream": true, "stream_options": "yes"}}'.encode(), "stream_options"),
    ],
    ids=[
        "malformed", "not-utf8", "not-an-object", "no-model", "model-not-a-string", "no-messages",
        "messages-not-a-list", "messages-empty", "stream-not-a-bool", "max-tokens-string", "max-tokens-negative",
        "max-completion-tokens-float", "n-zero", "stream-options-not-an-object",
    ],
)  # fmt: skip
async def test_bad_input_is_a_typed_error_and_nothing_is_reserved(
    lite: Proxied, user_id: str, body: bytes, mentions: str
) -> None:
    await lite.connect(user_id)

    response = await lite.http.post(
        "/api/v1/chat/completions",
        content=body,
        headers={**lite.headers(user_id), "content-type": "application/json"},
    )

    assert error_of(response) == (400, "invalid_request")
    assert mentions in response.json()["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    await _assert_nothing_happened(lite, user_id)


async def test_a_credential_that_cannot_be_opened_is_funding_invalid_and_never_sent(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id)
    # A credential sealed for another user (or under another key) does not open for this one.
    sealed = lite.wf.credentials.seal("sk-or-v1-someone-elses", f"{lite.keys.app_id}/someone-else")
    await lite.wf.store.save_connection(
        NewConnection(lite.keys.app_id, user_id, "dev", 1_000_000, sealed), int(time.time())
    )

    response = await lite.chat(user_id)

    assert error_of(response) == (402, "funding_invalid")
    assert lite.upstream_calls() == []
    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost) == ("released", 0)


async def test_oversized_body_is_refused_and_nothing_is_reserved(keys: Any, sqlite_url: str, user_id: str) -> None:
    async with running_proxy(keys, sqlite_url, max_body_bytes=2048) as proxy:
        await proxy.connect(user_id)

        response = await proxy.chat(user_id, messages=[{"role": "user", "content": "x" * 4096}])

        assert error_of(response) == (413, "invalid_request")
        assert "2048" in response.json()["error"]["message"]
        await _assert_nothing_happened(proxy, user_id)


async def test_bad_embeddings_input_is_a_typed_error(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    response = await lite.http.post(
        "/api/v1/embeddings",
        json={"model": "openai/text-embedding-3-small", "input": 42},
        headers=lite.headers(user_id),
    )

    assert error_of(response) == (400, "invalid_request")
    assert lite.upstream_calls("/api/v1/embeddings") == []
    assert await lite.ledger(user_id) == []


async def test_a_repeated_user_header_charges_the_first_user_named(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    await lite.connect("second-" + user_id)
    headers = [
        ("authorization", f"Bearer {lite.keys.secret_key}"),
        ("x-wattfare-user", user_id),
        ("x-wattfare-user", "second-" + user_id),
    ]

    response = await lite.http.post("/api/v1/chat/completions", json=lite.chat_body(), headers=headers)

    assert response.status_code == 200
    assert len(await lite.settled(user_id, 1)) == 1
    assert await lite.ledger("second-" + user_id) == []
