"""``example_apps/starlette_app``: the embed mounted with ``Mount`` plus ``WattfareMiddleware``, over HTTP."""

from __future__ import annotations

from example_apps.starlette_app.app import create_app, current_user

from .conftest import (
    MOUNT,
    REPLY,
    EmbedFactory,
    Upstream,
    connect_with_dev_consent,
    disconnect,
    error_of,
    example_browser,
    lower_cap,
    server_status,
    settled,
)


async def test_summarise_needs_a_signed_in_user_and_a_connected_budget(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    wf = new_embed(current_user)
    async with example_browser(create_app(wf), user_id) as browser:
        anonymous = await browser.post("/summarise", json={"text": "x"}, headers={"x-demo-user": ""})
        assert error_of(anonymous) == (401, "auth")
        # Nothing started the embed: no lifespan wiring, the mount starts it on first use.
        response = await browser.post("/summarise", json={"text": "a long text"})
        assert error_of(response) == (402, "not_connected")
    assert upstream.chat_calls() == []


async def test_starlette_user_connects_summarises_is_metered_hits_the_cap_and_disconnects(
    new_embed: EmbedFactory, upstream: Upstream, database_url: str, user_id: str
) -> None:
    wf = new_embed(current_user, database_url=database_url)
    async with example_browser(create_app(wf), user_id) as browser:
        session = await browser.post(f"{MOUNT}/session")  # resolve_user reads the example's login header
        assert session.status_code == 200, session.text
        token = session.json()["token"]
        await connect_with_dev_consent(browser, token, monthly_usd="1.50")

        reply = await browser.post("/summarise", json={"text": "a long text"})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["summary"] == REPLY
        record, rows = await settled(wf, user_id, 1)
        assert record.spent > 0 and record.reserved == 0
        assert rows[0].state == "settled"
        status = await server_status(browser, wf, user_id)
        assert status["spentUsd"] > 0
        assert body["remainingUsd"] == status["remainingUsd"] < 1.5
        # The in-process client sent the upstream a clamped, attributed request.
        sent = upstream.chat_calls()[-1].json
        assert sent["model"] == "openai/gpt-4o-mini" and isinstance(sent["max_tokens"], int)

        await lower_cap(browser, token, "0.000001")
        over = await browser.post("/summarise", json={"text": "more"})
        assert error_of(over) == (402, "budget_exceeded")  # answered by WattfareMiddleware
        await settled(wf, user_id, 1)

        await disconnect(browser, token)
        gone = await browser.post("/summarise", json={"text": "more"})
        assert error_of(gone) == (402, "not_connected")
        assert (await server_status(browser, wf, user_id))["status"] == "revoked"
    assert len(upstream.chat_calls()) == 1
