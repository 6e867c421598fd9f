"""``example_apps/litestar_app``: ``WattfarePlugin`` with DI and typed errors, over HTTP."""

from __future__ import annotations

from example_apps.litestar_app.app import create_app, current_user

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
    server_session,
    server_status,
    settled,
)


async def test_ask_needs_a_signed_in_user_and_a_connected_budget(
    new_embed: EmbedFactory, upstream: Upstream, user_id: str
) -> None:
    async with example_browser(create_app(new_embed(current_user)), user_id) as browser:
        anonymous = await browser.post("/ask", json={"question": "x"}, headers={"x-demo-user": ""})
        assert error_of(anonymous) == (401, "auth")
        budget = await browser.get("/budget")
        assert budget.status_code == 200
        assert (budget.json()["connected"], budget.json()["status"]) == (False, "not_connected")
        response = await browser.post("/ask", json={"question": "why?"})
        assert error_of(response) == (402, "not_connected")
    assert upstream.chat_calls() == []


async def test_litestar_user_connects_asks_is_metered_hits_the_cap_and_disconnects(
    new_embed: EmbedFactory, upstream: Upstream, database_url: str, user_id: str
) -> None:
    wf = new_embed(current_user, database_url=database_url)
    async with example_browser(create_app(wf), user_id) as browser:
        token = await server_session(browser, wf, user_id)
        await connect_with_dev_consent(browser, token, monthly_usd=3)
        assert (await browser.get("/budget")).json()["monthlyUsd"] == 3

        reply = await browser.post("/ask", json={"question": "why?"})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"answer": REPLY}
        record, rows = await settled(wf, user_id, 1)
        assert record.spent > 0 and record.reserved == 0 and rows[0].state == "settled"
        budget = (await browser.get("/budget")).json()
        assert budget["spentUsd"] > 0
        assert budget == await server_status(browser, wf, user_id)

        await lower_cap(browser, token, "0.000001")
        over = await browser.post("/ask", json={"question": "again?"})
        assert error_of(over) == (402, "budget_exceeded")  # the plugin's exception handler
        await settled(wf, user_id, 1)

        await disconnect(browser, token)
        gone = await browser.post("/ask", json={"question": "still there?"})
        assert error_of(gone) == (402, "not_connected")
        assert (await browser.get("/budget")).json()["status"] == "revoked"
        session = await browser.post(f"{MOUNT}/session")
        assert session.status_code == 200, "the plugin's /session resolves the example's login"
    assert len(upstream.chat_calls()) == 1
