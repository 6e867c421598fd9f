"""One-time grants through the proxy over real HTTP: requests counted and dollars capped
atomically, each request settled once, and every way a token can be wrong refused typed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest

from wattfare_embed import FundingGrant, GrantInvalidError, Wattfare, new_key_pair, to_wattfare_error
from wattfare_embed.grants import GrantStatus, IssuedGrant, grant_token_hash, issue_grant
from wattfare_embed.money import micros_from_usd
from wattfare_embed.periods import period_of
from wattfare_embed.store import GrantRecord, LedgerEntry
from wattfare_embed.testing.fake_openrouter import FakeKey
from wattfare_embed.testing.waiting import poll

from .conftest import CHAT, FINAL_STATES, SONNET, Proxied, error_of, running_proxy, sse_data, sse_events

OVERRUN_REPLY = " ".join(f"w{i}" for i in range(60))


async def grant_for(
    proxy: Proxied, requests: int = 3, max_usd: str = "1", *, expires_at: int | None = None
) -> tuple[IssuedGrant, FakeKey]:
    """A grant funded by a fresh fake key, as a finished consent round trip makes one."""
    key = proxy.fake.keys.create(name="grant funding")
    await proxy.wf.startup()
    funding = FundingGrant(credential=key.secret, expires_at=expires_at)
    issued = await issue_grant(proxy.wf, funding, requests, micros_from_usd(max_usd), int(time.time()))
    return issued, key


def grant_headers(proxy: Proxied, token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {proxy.keys.secret_key}", "x-wattfare-grant": token}


async def chat(proxy: Proxied, token: str, **body: Any) -> Any:
    return await proxy.http.post(CHAT, json=proxy.chat_body(**body), headers=grant_headers(proxy, token))


async def record_of(proxy: Proxied, issued: IssuedGrant) -> GrantRecord:
    await proxy.wf.caught_up(issued.grant_id)  # the store read directly: see what this process answered
    record = await proxy.wf.store.find_grant(proxy.keys.app_id, grant_token_hash(issued.token))
    assert record is not None
    return record


async def grant_rows(proxy: Proxied, issued: IssuedGrant) -> list[LedgerEntry]:
    await proxy.wf.caught_up(issued.grant_id)
    return list(reversed(await proxy.wf.store.ledger(proxy.keys.app_id, issued.grant_id, limit=1000)))


async def settled(proxy: Proxied, issued: IssuedGrant, requests: int) -> list[LedgerEntry]:
    """Wait until the grant's ledger holds ``requests`` final rows and nothing is held."""

    async def check() -> list[LedgerEntry] | None:
        rows = await grant_rows(proxy, issued)
        record = await record_of(proxy, issued)
        if len(rows) != requests or record.reserved != 0 or any(row.state not in FINAL_STATES for row in rows):
            return None
        return rows

    return await poll(check, what=f"{requests} final ledger rows for the grant")


async def test_three_requests_succeed_and_the_fourth_is_grant_invalid(proxy: Proxied) -> None:
    issued, key = await grant_for(proxy, requests=3)

    answers = [await chat(proxy, issued.token) for _ in range(3)]
    fourth = await chat(proxy, issued.token)

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert error_of(fourth) == (402, "grant_invalid")
    assert "used up" in fourth.json()["error"]["message"]
    rows = await settled(proxy, issued, 3)
    assert all(row.state == "settled" and row.cost_source == "reported" for row in rows)
    record = await record_of(proxy, issued)
    assert (record.requests_used, record.spent) == (3, sum(row.cost or 0 for row in rows))
    # Each request is charged its cost rounded up to the micro-dollar.
    assert 0 <= record.spent - micros_from_usd(proxy.fake.spend_by_key()[key.secret]) <= 3
    assert len(proxy.upstream_calls()) == 3  # the refused one never left
    # The upstream was called with the grant's own funding key.
    assert all(call.headers["authorization"] == f"Bearer {key.secret}" for call in proxy.upstream_calls())


async def test_a_grants_request_has_its_token_counts_in_its_final_row(proxy: Proxied) -> None:
    issued, _key = await grant_for(proxy, requests=1)
    answer = await chat(proxy, issued.token)
    assert answer.status_code == 200
    # Settled right after the answer, counts and charge in one write: no waiting beyond that settle.
    await proxy.wf.caught_up(issued.grant_id)
    [receipt] = await proxy.wf.store.receipts(
        proxy.keys.app_id, issued.grant_id, period_of(int(time.time())), before=None, limit=10
    )
    usage = answer.json()["usage"]
    assert (receipt.tokens_in, receipt.tokens_out) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert receipt.cost == (await record_of(proxy, issued)).spent > 0


async def test_twenty_concurrent_requests_on_a_three_request_grant_charge_exactly_three(proxy: Proxied) -> None:
    issued, key = await grant_for(proxy, requests=3, max_usd="5")
    proxy.fake.chunk_delay = 0.005

    async def one() -> tuple[int, str]:
        response = await chat(proxy, issued.token, max_tokens=20)
        return (200, "ok") if response.status_code == 200 else error_of(response)

    outcomes = await asyncio.gather(*(one() for _ in range(20)))

    assert sorted(outcomes) == [(200, "ok")] * 3 + [(402, "grant_invalid")] * 17, outcomes
    rows = await settled(proxy, issued, 3)
    record = await record_of(proxy, issued)
    assert record.requests_used == 3
    assert record.spent == sum(row.cost or 0 for row in rows) > 0
    assert len(proxy.upstream_calls()) == 3
    assert 0 <= record.spent - micros_from_usd(proxy.fake.spend_by_key()[key.secret]) <= 3


async def test_the_grant_dollar_cap_cuts_a_stream_mid_way(lite: Proxied) -> None:
    # 600 µ$ of Sonnet is a few dozen tokens; the provider overruns max_tokens.
    issued, _key = await grant_for(lite, requests=3, max_usd="0.0006")
    lite.fake.reply_text = OVERRUN_REPLY
    lite.fake.chunk_delay = 0.01
    lite.fake.inject(ignore_max_tokens=True)

    async with lite.http.stream(
        "POST",
        CHAT,
        json=lite.chat_body(model=SONNET, max_tokens=1000, stream=True),
        headers=grant_headers(lite, issued.token),
    ) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])

    assert response.status_code == 200
    events = sse_events(raw)
    assert events[-1]["error"]["code"] == "budget_exceeded"
    assert sse_data(raw).count("[DONE]") == 1
    pieces = sum(1 for event in events if event.get("choices") and event["choices"][0]["delta"].get("content"))
    assert 0 < pieces < 60  # cut mid-way, not at the end
    [row] = await settled(lite, issued, 1)
    assert row.reserved <= micros_from_usd("0.0006") and (row.cost or 0) <= row.reserved
    record = await record_of(lite, issued)
    assert record.spent <= record.max_cost
    # Nothing of the cap is left for a next request of any size: it is refused typed.
    assert error_of(await chat(lite, issued.token, model=SONNET)) == (402, "grant_invalid")

    async def reconciled() -> LedgerEntry | None:
        await lite.wf.proxy.sweep()
        [final] = await grant_rows(lite, issued)
        return final if not final.reconcile else None

    # The estimate the cut stream was charged is replaced by the upstream's figure, on the grant.
    final = await poll(reconciled, what="the cut stream's charge to be reconciled")
    assert final.cost_source == "reported"
    assert (await record_of(lite, issued)).spent == final.cost


async def test_an_expired_grant_is_refused(lite: Proxied) -> None:
    expires_at = int(time.time()) + 4
    issued, _key = await grant_for(lite, expires_at=expires_at)
    assert (await chat(lite, issued.token)).status_code == 200
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.2)

    refused = await chat(lite, issued.token)

    assert error_of(refused) == (402, "grant_invalid")
    assert "expired" in refused.json()["error"]["message"]
    assert (await lite.wf.grant(issued.token).status()).reason == "expired"
    await settled(lite, issued, 1)


async def test_a_revoked_grant_stops_the_next_request(lite: Proxied) -> None:
    issued, _key = await grant_for(lite)
    assert (await chat(lite, issued.token)).status_code == 200

    await lite.wf.grant(issued.token).revoke()

    refused = await chat(lite, issued.token)
    assert error_of(refused) == (402, "grant_invalid")
    assert "revoked" in refused.json()["error"]["message"]
    record = await record_of(lite, issued)
    assert record.revoked and record.sealed_credential is None


async def test_forged_replayed_and_session_tokens_are_refused_as_grants(lite: Proxied, user_id: str) -> None:
    issued, _key = await grant_for(lite, requests=1)
    assert (await chat(lite, issued.token)).status_code == 200
    forged = "wfg_" + "A" * 43
    session = (await lite.wf.create_session(user_id)).token

    unknown = await chat(lite, forged)
    replayed = await chat(lite, issued.token)  # its one request is spent
    malformed = await chat(lite, session)  # a session token is never a grant

    assert error_of(unknown) == (402, "grant_invalid") and "unknown" in unknown.json()["error"]["message"]
    assert error_of(replayed) == (402, "grant_invalid") and "used up" in replayed.json()["error"]["message"]
    assert error_of(malformed) == (402, "grant_invalid")
    assert len(lite.upstream_calls()) == 1


async def test_a_grant_token_is_never_a_session_token_nor_spends_without_the_secret_key(lite: Proxied) -> None:
    issued, _key = await grant_for(lite)

    as_session = await lite.http.get("/api/v1/connections", headers={"authorization": f"Bearer {issued.token}"})
    as_bearer = await lite.http.post(CHAT, json=lite.chat_body(), headers={"authorization": f"Bearer {issued.token}"})
    without_key = await lite.http.post(CHAT, json=lite.chat_body(), headers={"x-wattfare-grant": issued.token})

    assert error_of(as_session) == (401, "auth")
    assert error_of(as_bearer) == (401, "auth")
    assert error_of(without_key) == (401, "auth")
    assert (await record_of(lite, issued)).requests_used == 0


async def test_another_apps_grant_token_is_unknown_here(keys: Any, sqlite_url: str) -> None:
    other_keys = new_key_pair()
    async with running_proxy(keys, sqlite_url) as mine, running_proxy(other_keys, sqlite_url) as theirs:
        issued, _key = await grant_for(theirs)

        refused = await chat(mine, issued.token)

        assert error_of(refused) == (402, "grant_invalid")
        assert "unknown" in refused.json()["error"]["message"]
        assert not (await mine.wf.grant(issued.token).status()).active
        assert (await chat(theirs, issued.token)).status_code == 200
        await settled(theirs, issued, 1)


async def test_grants_leave_connections_untouched(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id, "1")
    issued, _key = await grant_for(lite, requests=2)
    assert (await lite.chat(user_id)).status_code == 200
    before = await lite.connection(user_id)

    # Naming a user as well does not charge them: the grant pays.
    headers = {**grant_headers(lite, issued.token), "x-wattfare-user": user_id}
    assert (await lite.http.post(CHAT, json=lite.chat_body(), headers=headers)).status_code == 200
    assert (await chat(lite, issued.token)).status_code == 200
    await settled(lite, issued, 2)

    after = await lite.connection(user_id)
    assert (after.spent, after.reserved, after.monthly_cap) == (before.spent, 0, before.monthly_cap)
    assert len(await lite.ledger(user_id)) == 1
    assert (await lite.chat(user_id)).status_code == 200  # the connection spends as before


async def test_wf_grant_openai_spends_in_process_and_status_counts_down(lite: Proxied) -> None:
    issued, _key = await grant_for(lite, requests=2)
    grant = lite.wf.grant(issued.token)
    client = grant.openai()

    reply = await client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    status = await grant.status()

    assert reply.choices[0].message.content
    assert (status.active, status.requests_left, status.requests) == (True, 1, 2)
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402
    assert isinstance(to_wattfare_error(refused.value), GrantInvalidError)
    final: GrantStatus = await grant.status()
    assert (final.active, final.reason, final.requests_left) == (False, "used_up", 0)
    assert final.to_json()["requestsLeft"] == 0
    await settled(lite, issued, 2)


async def test_a_request_the_upstream_refuses_gives_its_request_back(lite: Proxied) -> None:
    issued, _key = await grant_for(lite, requests=1)
    lite.fake.inject(status=400)

    refused = await chat(lite, issued.token)

    assert refused.status_code == 400
    [row] = await settled(lite, issued, 1)
    assert (row.state, row.cost) == ("released", 0)
    assert (await record_of(lite, issued)).requests_used == 0
    assert (await chat(lite, issued.token)).status_code == 200


async def test_a_crashed_grant_request_is_swept_charging_its_hold(lite: Proxied) -> None:
    issued, _key = await grant_for(lite, requests=2)
    store = lite.wf.store
    reserved = await store.reserve_grant(
        lite.keys.app_id,
        grant_token_hash(issued.token),
        _reservation_request(lite.wf),
        int(time.time()) - 7200,  # admitted two hours ago by a process that died
    )
    assert not isinstance(reserved, str)

    assert await store.sweep_expired(int(time.time()), app_id=lite.keys.app_id) == 1

    record = await record_of(lite, issued)
    assert (record.reserved, record.spent, record.requests_used) == (0, 5000, 1)
    [row] = await grant_rows(lite, issued)
    assert (row.state, row.cost) == ("expired", 5000)


def _reservation_request(wf: Wattfare) -> Any:
    from wattfare_embed.store import ReservationRequest

    return ReservationRequest(
        app_id=wf.keys.app_id, app_user_id="", wanted=5000, minimum=100, kind="chat", model="m", ttl_seconds=60
    )


async def test_revoking_a_grant_stops_its_stream_in_flight(lite: Proxied) -> None:
    issued, _key = await grant_for(lite)
    lite.fake.reply_text = OVERRUN_REPLY
    lite.fake.chunk_delay = 0.05
    chunks: list[bytes] = []

    async with lite.http.stream(
        "POST", CHAT, json=lite.chat_body(stream=True, max_tokens=200), headers=grant_headers(lite, issued.token)
    ) as response:
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            if len(chunks) == 2:
                await lite.wf.grant(issued.token).revoke()

    events = sse_events(b"".join(chunks))
    assert events[-1]["error"]["code"] == "not_connected"  # the revoked stream's cut-off event
    pieces = sum(1 for event in events if event.get("choices") and event["choices"][0]["delta"].get("content"))
    assert pieces < 60
    [row] = await settled(lite, issued, 1)
    assert row.state == "settled"
    assert error_of(await chat(lite, issued.token)) == (402, "grant_invalid")
