"""Upstream failures before the first byte: typed errors, the reservation released, nothing charged."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest
from sqlalchemy import update

from wattfare_embed.store.schema import connections
from wattfare_embed.testing.live_server import free_port

from .conftest import MINI, Proxied, error_of, running_proxy

KEY_LIMIT = "Key limit exceeded (monthly limit). Manage it using https://openrouter.ai/settings/keys"
NEEDS_CREDITS = (
    "This request requires more credits, or fewer max_tokens. You requested up to 4096 tokens, but can only "
    "afford 12. To increase, visit https://openrouter.ai/settings/keys and create a key with a higher monthly limit"
)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"status": 402, "message": NEEDS_CREDITS}, 402, "budget_exceeded"),
        ({"status": 403, "message": KEY_LIMIT}, 402, "budget_exceeded"),
        ({"status": 402, "message": "Insufficient credits"}, 402, "funding_invalid"),
        ({"status": 429, "headers": {"Retry-After": "7"}}, 429, "rate_limited"),
        ({"status": 500}, 502, "upstream"),
        ({"status": 502}, 502, "upstream"),
        ({"status": 503, "headers": {"Retry-After": "2"}}, 502, "upstream"),
        ({"status": 400, "message": "Invalid model specified"}, 400, "invalid_request"),
    ],
    ids=["402-needs-credits", "403-key-limit", "402-no-credit", "429", "500", "502", "503", "400"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
async def test_upstream_error_becomes_a_typed_error_and_releases_the_reservation(
    lite: Proxied, user_id: str, fault: dict[str, Any], status: int, code: str, stream: bool
) -> None:
    await lite.connect(user_id)
    lite.fake.inject(**fault)

    response = await lite.chat(user_id, stream=stream)

    assert error_of(response) == (status, code)
    assert response.headers["x-should-retry"] == ("true" if code == "rate_limited" else "false")
    if code == "rate_limited":
        assert response.headers["retry-after"] == "7"
    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost) == ("released", 0)
    record = await lite.connection(user_id)
    assert (record.spent, record.reserved) == (0, 0)


async def test_the_funding_keys_own_limit_is_budget_exceeded(lite: Proxied, user_id: str) -> None:
    # The user's key at the upstream has a lower limit than the cap here: the upstream's own wall.
    key = lite.fake.keys.create(name="capped at the source", limit=Decimal("0.0001"))
    await lite.connect(user_id, "5", key=key)

    preflight = await lite.chat(user_id, model="anthropic/claude-sonnet-4")  # 402 "requires more credits"
    key.usage = key.limit or Decimal(0)
    exhausted = await lite.chat(user_id)  # 403 "Key limit exceeded"

    assert error_of(preflight) == (402, "budget_exceeded")
    assert error_of(exhausted) == (402, "budget_exceeded")
    rows = await lite.settled(user_id, 2)
    assert {(row.state, row.cost) for row in rows} == {("released", 0)}
    assert (await lite.wf.status(user_id)).status == "active"


async def test_a_refused_credential_marks_the_connection_and_stops_later_calls(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.inject(status=401)

    first = await lite.chat(user_id)
    second = await lite.chat(user_id)

    assert error_of(first) == (402, "funding_invalid")
    assert error_of(second) == (402, "funding_invalid")
    assert len(lite.upstream_calls()) == 1  # the second never left
    assert (await lite.wf.status(user_id)).status == "funding_invalid"
    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost) == ("released", 0)


async def test_an_upstream_that_is_not_there_is_an_upstream_error(keys: Any, sqlite_url: str, user_id: str) -> None:
    async with running_proxy(keys, sqlite_url) as proxy:
        await proxy.connect(user_id)
        await proxy.chat(user_id)  # loads the price book while the upstream is still there
        # The connection's own upstream URL wins over the configured one: point it at a closed port.
        await _point_connection_at(proxy, user_id, f"http://127.0.0.1:{free_port()}/api/v1")

        response = await proxy.chat(user_id)

        assert error_of(response) == (502, "upstream")
        assert response.headers["x-should-retry"] == "false"
        rows = await proxy.settled(user_id, 2)
        assert sorted((row.state, row.cost_source) for row in rows) == [("released", "none"), ("settled", "reported")]
        assert [row.cost for row in rows if row.state == "released"] == [0]


async def _point_connection_at(proxy: Proxied, user: str, upstream_url: str) -> None:
    statement = (
        update(connections)
        .where(connections.c.app_id == proxy.keys.app_id, connections.c.app_user_id == user)
        .values(upstream_url=upstream_url)
    )
    store: Any = proxy.wf.store
    await store._run_handle().run(lambda db: db.execute(statement))


async def test_openai_sdk_receives_typed_errors(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "0.000001")

    async with lite.openai(user_id) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=MINI, messages=[{"role": "user", "content": "hi"}], stream=True)

    assert caught.value.status_code == 402
    assert caught.value.body == {"code": "budget_exceeded", "message": caught.value.body["message"]}  # type: ignore[index]
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_a_model_list_that_cannot_be_fetched_is_an_upstream_error_before_anything_is_held(
    lite: Proxied, user_id: str
) -> None:
    await lite.connect(user_id)
    lite.fake.inject(status=503, path="/api/v1/models")

    failed = await lite.chat(user_id)
    recovered = await lite.chat(user_id)

    assert error_of(failed) == (502, "upstream")
    assert recovered.status_code == 200  # the next request loads the list again
    assert len(lite.upstream_calls()) == 1
    assert len(await lite.settled(user_id, 1)) == 1
