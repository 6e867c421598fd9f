"""The store's share of the cap: clocks that disagree, months that turn, apps that share a database,
PostgreSQL defaulting to REPEATABLE READ, and store errors while money is held."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

import wattfare_embed.proxy
from tests.conftest import POSTGRES_URL, require_postgres
from wattfare_embed import AppKeys, SqlStore, Wattfare, new_key_pair
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import ConnectionState, NewConnection, Refusal, Reservation, ReservationRequest
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url
from wattfare_embed.testing.waiting import poll

from .conftest import Proxied, error_of, running_proxy, sse_events

FEB_LAST = int(datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC).timestamp())
MARCH_FIRST = FEB_LAST + 2  # 00:00:01 on 1 March
MARCH_LATER = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp())


def _ask(app_id: str, user: str, wanted: int, minimum: int | None = None, ttl: int = 3600) -> ReservationRequest:
    return ReservationRequest(app_id, user, wanted, wanted if minimum is None else minimum, "chat", "m", ttl)


async def _hold(store: SqlStore, request: ReservationRequest, now: int) -> Reservation:
    held = await store.reserve(request, now)
    assert isinstance(held, Reservation), held
    return held


async def _connect(store: SqlStore, app_id: str, user: str, cap: int, now: int) -> None:
    await store.save_connection(NewConnection(app_id, user, "dev", cap, "v1.sealed"), now)


# -- the billing period never moves back --------------------------------------------------------


async def test_a_settle_from_a_clock_behind_never_moves_the_period_back(store: SqlStore, user_id: str) -> None:
    app = "t" + uuid.uuid4().hex[:12]
    await _connect(store, app, user_id, 1_000_000, FEB_LAST - 60)
    held = await _hold(store, _ask(app, user_id, 600_000), MARCH_FIRST)  # a clock already in March

    # Another process, its clock 2 s behind, settles across the 1st.
    await store.settle(held.ledger_id, 600_000, "reported", MARCH_FIRST - 2)

    record = await store.get_connection(app, user_id, MARCH_FIRST)
    assert record is not None and (record.period, record.spent, record.reserved) == ("2026-03", 600_000, 0)
    [entry] = await store.ledger(app, user_id)
    assert entry.cost == 600_000
    # The rest of March's cap, not another whole one, is what is left: from either clock.
    for clock in (MARCH_FIRST - 1, MARCH_FIRST + 1):
        assert await store.reserve(_ask(app, user_id, 500_000), clock) is Refusal.BUDGET_EXCEEDED
    assert isinstance(await store.reserve(_ask(app, user_id, 400_000), MARCH_FIRST - 1), Reservation)


async def test_a_reserve_from_a_clock_behind_keeps_the_later_month(store: SqlStore, user_id: str) -> None:
    app = "t" + uuid.uuid4().hex[:12]
    await _connect(store, app, user_id, 1_000_000, MARCH_FIRST)
    first = await _hold(store, _ask(app, user_id, 300_000), MARCH_FIRST)
    await store.settle(first.ledger_id, 300_000, "reported", MARCH_FIRST)

    behind = await _hold(store, _ask(app, user_id, 100_000), FEB_LAST)

    assert (behind.connection.period, behind.connection.spent) == ("2026-03", 300_000)
    await store.settle(behind.ledger_id, 100_000, "reported", FEB_LAST)
    record = await store.get_connection(app, user_id, MARCH_FIRST)
    assert record is not None and (record.period, record.spent) == ("2026-03", 400_000)


# -- a reconciliation lands in a month ----------------------------------------------------------


async def test_a_reconciliation_after_the_month_turned_lands_in_the_month_of_the_charge(
    store: SqlStore, user_id: str
) -> None:
    app = "t" + uuid.uuid4().hex[:12]
    await _connect(store, app, user_id, 1_000_000, FEB_LAST - 60)
    held = await _hold(store, _ask(app, user_id, 200_000), FEB_LAST - 30)
    await store.settle(held.ledger_id, 100_000, "estimated", FEB_LAST - 30, generation_id="gen-1", reconcile=True)

    assert await store.reconcile(held.ledger_id, 300_000, MARCH_FIRST) is True

    february = await store.get_connection(app, user_id, FEB_LAST)
    march = await store.get_connection(app, user_id, MARCH_FIRST)
    assert february is not None and (february.period, february.spent) == ("2026-02", 300_000)
    assert march is not None and march.spent == 0  # March starts afresh
    [entry] = await store.ledger(app, user_id)
    assert (entry.cost, entry.cost_source, entry.reconcile) == (300_000, "reported", False)


async def test_a_reconciliation_after_its_months_counter_rolled_over_lands_in_the_current_month(
    store: SqlStore, user_id: str
) -> None:
    app = "t" + uuid.uuid4().hex[:12]
    await _connect(store, app, user_id, 1_000_000, FEB_LAST - 60)
    held = await _hold(store, _ask(app, user_id, 200_000), FEB_LAST - 30)
    await store.settle(held.ledger_id, 100_000, "estimated", FEB_LAST - 30, generation_id="gen-1", reconcile=True)
    march = await _hold(store, _ask(app, user_id, 50_000), MARCH_FIRST)
    await store.settle(march.ledger_id, 50_000, "reported", MARCH_FIRST)

    await store.reconcile(held.ledger_id, 300_000, MARCH_LATER)

    record = await store.get_connection(app, user_id, MARCH_LATER)
    assert record is not None and (record.period, record.spent) == ("2026-03", 50_000 + 200_000)


# -- apps sharing a database keep to their own rows ---------------------------------------------


async def test_sweeps_and_reconciliations_leave_other_apps_rows_alone(database_url: str, user_id: str) -> None:
    ours, theirs = new_key_pair(app_id="t" + uuid.uuid4().hex[:12]), new_key_pair(app_id="t" + uuid.uuid4().hex[:12])
    embeds = [
        Wattfare(secret_key=k.secret_key, publishable_key=k.publishable_key, database_url=database_url)
        for k in (ours, theirs)
    ]
    async with embeds[0] as wf, embeds[1] as other:
        long_ago = int(time.time()) - 7_200
        await _connect(wf.store, ours.app_id, user_id, 1_000_000, long_ago)
        orphan = await _hold(wf.store, _ask(ours.app_id, user_id, 1_000, ttl=0), long_ago)
        estimated = await _hold(wf.store, _ask(ours.app_id, user_id, 1_000), long_ago)
        await wf.store.settle(estimated.ledger_id, 500, "estimated", long_ago, generation_id="gen-x", reconcile=True)

        await other.proxy.sweep()

        rows = {row.id: row for row in await wf.store.ledger(ours.app_id, user_id)}
        assert rows[orphan.ledger_id].state == "reserved"  # not the other app's to charge
        assert rows[estimated.ledger_id].reconcile is True  # nor to give up on
        assert [e.id for e in await wf.store.pending_reconciliations(10, app_id=theirs.app_id)] == []
        assert await wf.store.sweep_expired(int(time.time()), app_id=theirs.app_id) == 0

        await wf.proxy.sweep()

        rows = {row.id: row for row in await wf.store.ledger(ours.app_id, user_id)}
        assert rows[orphan.ledger_id].state == "expired"


# -- PostgreSQL whose default isolation is REPEATABLE READ ---------------------------------------


@pytest.fixture
async def repeatable_read_url() -> AsyncIterator[str]:
    """A fresh database next to the test one, whose default isolation is REPEATABLE READ."""
    require_postgres()
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_rr"
    url = asyncpg_url(POSTGRES_URL)
    assert url is not None
    admin = await asyncpg.connect(**_connect_kwargs(url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.execute(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation TO 'repeatable read'")
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.postgres
async def test_under_a_repeatable_read_default_the_store_still_runs_read_committed(repeatable_read_url: str) -> None:
    store = SqlStore(repeatable_read_url)
    await store.open()
    try:
        app = "t" + uuid.uuid4().hex[:12]
        users = [f"u{index}" for index in range(10)]
        for user in users:
            await _connect(store, app, user, 10_000_000, int(time.time()))

        async def reserve_and_settle(index: int) -> None:
            now = int(time.time())
            held = await _hold(store, _ask(app, users[index % 10], 1_000), now)
            assert await store.settle(held.ledger_id, 700, "reported", now)

        await asyncio.gather(*(reserve_and_settle(index) for index in range(300)))

        for user in users:
            record = await store.get_connection(app, user, int(time.time()))
            assert record is not None and (record.spent, record.reserved) == (30 * 700, 0)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_under_a_repeatable_read_default_the_proxy_never_500s_or_leaks_holds(
    repeatable_read_url: str, keys: AppKeys, user_id: str
) -> None:
    async with running_proxy(keys, repeatable_read_url) as proxy:
        await proxy.connect(user_id, "5")
        proxy.fake.reply_text = "short"

        statuses = await asyncio.gather(*(proxy.chat(user_id, max_tokens=10) for _ in range(80)))

        assert {response.status_code for response in statuses} == {200}
        rows = await proxy.settled(user_id, 80)
        assert all(row.state == "settled" and row.cost_source == "reported" for row in rows)
        assert (await proxy.connection(user_id)).spent == sum(row.cost or 0 for row in rows)


# -- store errors while money is held -------------------------------------------------------------


async def test_a_failed_reserve_is_a_typed_503_not_retried_by_clients(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError("could not connect to the database")

    lite.wf.store.reserve = failing  # type: ignore[method-assign]
    response = await lite.chat(user_id, max_tokens=20)

    assert error_of(response) == (503, "unavailable")
    # The hold may have committed with its reply lost: a client retrying on its own could pay twice.
    assert response.headers["x-should-retry"] == "false"
    assert int(response.headers["retry-after"]) > 0
    assert lite.upstream_calls() == []


async def test_on_postgresql_a_reserve_past_its_own_deadline_is_a_typed_503(keys: AppKeys, user_id: str) -> None:
    require_postgres()
    async with running_proxy(keys, POSTGRES_URL) as proxy:
        await proxy.connect(user_id)
        waits_ended: list[str] = []

        async def unanswered(*args: Any, **kwargs: Any) -> Any:
            # What the fast path does when it opens a connection to a database that does not
            # answer: asyncpg.connect enters its deadline, then waits.
            try:
                async with asyncio.timeout(0.05):
                    await asyncio.sleep(5)
            finally:
                waits_ended.append("at its deadline" if time.monotonic() < started + 2 else "late")

        proxy.wf.store.reserve = unanswered  # type: ignore[method-assign]
        started = time.monotonic()
        response = await asyncio.wait_for(proxy.chat(user_id, max_tokens=20), 10)

        assert error_of(response) == (503, "unavailable")
        assert waits_ended == ["at its deadline"]
        assert proxy.upstream_calls() == []


@pytest.fixture
def quick_revocation_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wattfare_embed.proxy, "REVOCATION_POLL_SECONDS", 0.05)


async def _revoke_elsewhere(proxy: Proxied, user: str) -> None:
    """What a revoke handled by another process looks like here: only the database changes."""
    await proxy.wf.store.set_status(
        proxy.keys.app_id, user, ConnectionState.REVOKED, int(time.time()), drop_credential=True
    )


@pytest.mark.usefixtures("quick_revocation_poll")
async def test_the_revocation_poll_of_an_open_stream_survives_store_errors(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.reply_text = " ".join(f"word{i}" for i in range(40))
    lite.fake.chunk_delay = 0.1
    store = lite.wf.store
    real_get = store.get_connection
    failures: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if len(failures) < 3:
            failures.append(1)
            raise OSError("the database went away for a moment")
        return await real_get(*args, **kwargs)

    store.get_connection = flaky  # type: ignore[method-assign]
    try:
        async with lite.stream(user_id, max_tokens=100) as response:
            received = b""
            async for chunk in response.aiter_raw():
                received += chunk
                if len(failures) == 3 and b"not_connected" not in received and len(sse_events(received)) == 3:
                    await _revoke_elsewhere(lite, user_id)
    finally:
        store.get_connection = real_get  # type: ignore[method-assign]

    events = sse_events(received)
    assert events[-1]["error"]["code"] == "not_connected"
    assert len(events) < 30  # stopped long before its 40 words
    await lite.settled(user_id, 1)


@pytest.mark.parametrize("where", ["here", "elsewhere"])
@pytest.mark.usefixtures("quick_revocation_poll")
async def test_a_non_streamed_call_revoked_while_the_upstream_answers_is_a_402(
    lite: Proxied, user_id: str, where: str
) -> None:
    await lite.connect(user_id)
    lite.recorder.first_byte_gate = gate = asyncio.Event()
    call = asyncio.ensure_future(lite.chat(user_id, max_tokens=20))
    await poll(lambda: _sent(lite), what="the request to reach the upstream")

    if where == "here":
        await lite.wf.disconnect(user_id)
    else:
        await _revoke_elsewhere(lite, user_id)
        await asyncio.sleep(0.3)  # a few polls
    gate.set()
    response = await call

    assert error_of(response) == (402, "not_connected")
    # The upstream bills a non-streamed answer in full: charged, reconciled from its record.
    [row] = await lite.settled(user_id, 1, reconciled=True)
    assert row.cost == micros_from_usd(lite.generation(row.generation_id).total_cost) > 0


async def _sent(proxy: Proxied) -> bool | None:
    return True if proxy.upstream_calls() else None
