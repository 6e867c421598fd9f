"""`SqlStore` on SQLite and PostgreSQL: atomic reserve / settle / release, lazy periods, sealed credentials."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select, update

from wattfare_embed import AppKeys, DevConsent, SqlStore, metadata
from wattfare_embed.consent import AuthorityContext
from wattfare_embed.crypto import CredentialBox
from wattfare_embed.periods import period_of
from wattfare_embed.store import (
    ConnectionState,
    GrantChange,
    NewConnection,
    Refusal,
    Reservation,
    ReservationRequest,
)
from wattfare_embed.store.schema import connections, ledger

from .conftest import Harness, make_embed, run_sql, running

USD = 1_000_000


async def _sql(store: SqlStore, statement: Any) -> Any:
    def operation(db: Any) -> Any:
        result = db.execute(statement)
        return result.all() if result.returns_rows else result.rowcount

    return await store._run_handle().run(operation)


async def _connect(store: SqlStore, app_id: str, user: str, cap: int, now: int | None = None) -> None:
    await store.save_connection(
        NewConnection(app_id=app_id, app_user_id=user, authority="dev", monthly_cap=cap, sealed_credential="v1.x"),
        now or int(time.time()),
    )


def _request(app_id: str, user: str, wanted: int, minimum: int | None = None, ttl: int = 3600) -> ReservationRequest:
    return ReservationRequest(
        app_id=app_id,
        app_user_id=user,
        wanted=wanted,
        minimum=wanted if minimum is None else minimum,
        kind="chat",
        model="test/model",
        ttl_seconds=ttl,
    )


async def _reserve(store: SqlStore, request: ReservationRequest, now: int | None = None) -> Reservation:
    held = await store.reserve(request, now or int(time.time()))
    assert isinstance(held, Reservation), held
    return held


async def _balance(store: SqlStore, app_id: str, user: str) -> tuple[int, int, int]:
    record = await store.get_connection(app_id, user, int(time.time()))
    assert record is not None
    return record.monthly_cap, record.spent, record.reserved


def _last_month() -> str:
    first = datetime.now(UTC).replace(day=1)
    return period_of((first - timedelta(days=1)).timestamp())


# -- concurrency ----------------------------------------------------------------------------------


async def test_200_concurrent_reservations_never_jointly_pass_the_cap(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    cap, each = 1 * USD, 7_000  # room for exactly 142 of 200
    await _connect(store, keys.app_id, user_id, cap)
    now = int(time.time())
    results = await asyncio.gather(*(store.reserve(_request(keys.app_id, user_id, each), now) for _ in range(200)))
    granted = [result for result in results if isinstance(result, Reservation)]
    refused = [result for result in results if not isinstance(result, Reservation)]
    assert len(granted) == cap // each == 142
    assert sum(held.amount for held in granted) <= cap
    assert all(held.amount == each for held in granted)
    assert set(refused) == {Refusal.HELD_IN_FLIGHT}  # nothing is spent: the holds in flight stand in the way
    assert await _balance(store, keys.app_id, user_id) == (cap, 0, 142 * each)
    entries = await store.ledger(keys.app_id, user_id, limit=500)
    assert len(entries) == 142 and {entry.state for entry in entries} == {"reserved"}
    assert len({held.ledger_id for held in granted}) == 142


async def test_concurrent_partial_reservations_fill_the_cap_exactly(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    cap = 1 * USD
    await _connect(store, keys.app_id, user_id, cap)
    now = int(time.time())
    results = await asyncio.gather(
        *(store.reserve(_request(keys.app_id, user_id, 9_000, minimum=1), now) for _ in range(200))
    )
    granted = [result for result in results if isinstance(result, Reservation)]
    assert sum(held.amount for held in granted) == cap  # the last one was clamped to what was left
    assert len(granted) == -(-cap // 9_000)
    assert (await _balance(store, keys.app_id, user_id))[2] == cap


async def test_concurrent_reserve_and_settle_keep_the_books_balanced(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    cap = 2 * USD
    await _connect(store, keys.app_id, user_id, cap)

    async def one_request() -> int:
        now = int(time.time())
        held = await store.reserve(_request(keys.app_id, user_id, 30_000), now)
        if not isinstance(held, Reservation):
            return 0
        await asyncio.sleep(0)
        assert await store.settle(held.ledger_id, 20_000, "reported", now)
        return 20_000

    charged = sum(await asyncio.gather(*(one_request() for _ in range(120))))
    _, spent, reserved = await _balance(store, keys.app_id, user_id)
    assert reserved == 0
    assert spent == charged <= cap


# -- reserve ----------------------------------------------------------------------------------------


async def test_reserve_refuses_without_an_active_connection(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    now = int(time.time())
    assert await store.reserve(_request(keys.app_id, user_id, 1), now) is Refusal.NOT_CONNECTED
    await _connect(store, keys.app_id, user_id, USD)
    await store.set_status(keys.app_id, user_id, ConnectionState.FUNDING_INVALID, now, drop_credential=False)
    assert await store.reserve(_request(keys.app_id, user_id, 1), now) is Refusal.FUNDING_INVALID
    await store.set_status(keys.app_id, user_id, ConnectionState.REVOKED, now, drop_credential=True)
    assert await store.reserve(_request(keys.app_id, user_id, 1), now) is Refusal.REVOKED
    assert await store.ledger(keys.app_id, user_id) == []


async def test_reserve_clamps_to_the_headroom_but_not_below_the_minimum(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    first = await _reserve(store, _request(keys.app_id, user_id, 700_000))
    clamped = await _reserve(store, _request(keys.app_id, user_id, 700_000, minimum=100_000))
    assert (first.amount, clamped.amount) == (700_000, 300_000)
    assert await store.reserve(_request(keys.app_id, user_id, 1), int(time.time())) is Refusal.HELD_IN_FLIGHT
    await store.settle(first.ledger_id, 0, "none", int(time.time()))
    refused = await store.reserve(_request(keys.app_id, user_id, 800_000), int(time.time()))
    assert refused is Refusal.HELD_IN_FLIGHT  # 700_000 free, minimum 800_000: it fits once the 300_000 hold ends
    await store.settle(clamped.ledger_id, 300_000, "reported", int(time.time()))
    refused = await store.reserve(_request(keys.app_id, user_id, 800_000), int(time.time()))
    assert refused is Refusal.BUDGET_EXCEEDED  # 700_000 left for good


async def test_a_reservation_carries_the_connection_as_read_and_writes_its_whole_ledger_row(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    created = int(time.time()) - 100
    connection = NewConnection(
        app_id=keys.app_id,
        app_user_id=user_id,
        authority="dev",
        monthly_cap=USD,
        sealed_credential="v1.sealed",
        grant_id="grant-7",
        upstream_url="https://upstream.example/api/v1",
        hard_limit=2 * USD,
    )
    await store.save_connection(connection, created)
    await _reserve(store, _request(keys.app_id, user_id, 100_000), created + 10)
    now = created + 20
    before = await store.get_connection(keys.app_id, user_id, now)
    assert before is not None and (before.reserved, before.updated_at) == (100_000, created + 10)
    request = ReservationRequest(keys.app_id, user_id, 200_000, 1, "embeddings", "test/other", ttl_seconds=60)
    held = await _reserve(store, request, now)
    # Every column in its place: the row as it was read, with the holds before this one.
    assert held.connection == before and held.connection.sealed_credential == "v1.sealed"
    entry = ledger.c
    written = select(
        entry.connection_id, entry.app_id, entry.app_user_id, entry.kind, entry.model, entry.state, entry.reserved
    ).add_columns(entry.cost, entry.reconcile, entry.period, entry.created_at, entry.expires_at, entry.settled_at)
    [row] = await _sql(store, written.where(entry.id == held.ledger_id))
    assert tuple(row) == (
        before.id,
        keys.app_id,
        user_id,
        "embeddings",
        "test/other",
        "reserved",
        200_000,
        None,
        False,
        period_of(now),
        now,
        now + 60,
        None,
    )
    assert await _balance(store, keys.app_id, user_id) == (USD, 0, 300_000)


async def test_users_and_apps_have_separate_budgets(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    await _connect(store, keys.app_id, "neighbour", USD)
    await _connect(store, keys.app_id + "x", user_id, USD)
    await _reserve(store, _request(keys.app_id, user_id, USD))
    assert (await _balance(store, keys.app_id, "neighbour"))[2] == 0
    assert (await _balance(store, keys.app_id + "x", user_id))[2] == 0
    await _reserve(store, _request(keys.app_id, "neighbour", USD))


# -- settle and release -------------------------------------------------------------------------------


async def test_settle_is_exactly_once(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, 300_000))
    now = int(time.time())
    assert await store.settle(held.ledger_id, 120_000, "reported", now, generation_id="gen-1") is True
    assert await _balance(store, keys.app_id, user_id) == (USD, 120_000, 0)
    assert await store.settle(held.ledger_id, 999_000, "reported", now) is False
    assert await store.settle(held.ledger_id, 0, "none", now) is False
    assert await _balance(store, keys.app_id, user_id) == (USD, 120_000, 0)
    [entry] = await store.ledger(keys.app_id, user_id)
    assert (entry.state, entry.cost, entry.cost_source, entry.generation_id) == (
        "settled",
        120_000,
        "reported",
        "gen-1",
    )
    assert await store.settle("req_unknown", 1, "reported", now) is False


async def test_settle_writes_the_token_counts_into_the_final_row(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    counted = await _reserve(store, _request(keys.app_id, user_id, 300_000))
    told_none = await _reserve(store, _request(keys.app_id, user_id, 300_000))
    now = int(time.time())
    assert await store.settle(counted.ledger_id, 120_000, "reported", now, tokens_in=42, tokens_out=7)
    assert await store.settle(told_none.ledger_id, 5_000, "estimated", now)
    # A second settle of a final row changes neither its charge nor its counts.
    assert not await store.settle(counted.ledger_id, 1, "reported", now, tokens_in=1, tokens_out=1)
    receipts = await store.receipts(keys.app_id, user_id, period_of(now), before=None, limit=10)
    assert {r.id: (r.cost, r.tokens_in, r.tokens_out) for r in receipts} == {
        counted.ledger_id: (120_000, 42, 7),
        told_none.ledger_id: (5_000, None, None),
    }
    [total] = await store.month_totals(keys.app_id, period_of(now))
    assert (total.tokens_in, total.tokens_out) == (42, 7)


async def test_a_settle_can_return_the_users_counter_as_its_charge_left_it(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    first = await _reserve(store, _request(keys.app_id, user_id, 300_000))
    second = await _reserve(store, _request(keys.app_id, user_id, 300_000))
    now = int(time.time())
    settled = await store.settle_reading_spend(first.ledger_id, 120_000, "reported", now)
    again = await store.settle_reading_spend(first.ledger_id, 120_000, "reported", now)
    record = await store.get_connection(keys.app_id, user_id, now)
    assert record is not None and settled.final and not again.final
    # The hot paths return it from the charging statement; the portable one leaves it to a read.
    assert settled.spend is None or (settled.spend.spent, settled.spend.monthly_cap) == (120_000, USD)
    assert settled.spend is None or (settled.spend.status, settled.spend.period) == ("active", record.period)
    later = await store.settle_reading_spend(second.ledger_id, 30_000, "reported", now)
    assert later.spend is None or later.spend.spent == 150_000
    assert (store._sqlite is None and store._postgres is None) or settled.spend is not None


async def test_concurrent_settles_of_one_reservation_apply_once(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, 300_000))
    now = int(time.time())
    outcomes = await asyncio.gather(*(store.settle(held.ledger_id, 100_000, "reported", now) for _ in range(20)))
    assert outcomes.count(True) == 1
    assert await _balance(store, keys.app_id, user_id) == (USD, 100_000, 0)


async def test_release_frees_the_hold_and_charges_nothing(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, USD))
    assert await store.reserve(_request(keys.app_id, user_id, 1), int(time.time())) is Refusal.HELD_IN_FLIGHT
    assert await store.settle(held.ledger_id, 0, "none", int(time.time())) is True
    assert await _balance(store, keys.app_id, user_id) == (USD, 0, 0)
    [entry] = await store.ledger(keys.app_id, user_id)
    assert entry.state == "released"
    again = await _reserve(store, _request(keys.app_id, user_id, USD))
    assert again.amount == USD


async def test_a_settle_above_the_hold_is_charged_in_full(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    # The upstream's reported cost is authoritative, even when the estimate was short.
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, 100_000))
    assert await store.settle(held.ledger_id, 130_000, "reported", int(time.time()))
    assert await _balance(store, keys.app_id, user_id) == (USD, 130_000, 0)


# -- periods ----------------------------------------------------------------------------------------


async def test_the_period_resets_lazily(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    mine = (connections.c.app_id == keys.app_id) & (connections.c.app_user_id == user_id)
    assert await _sql(store, update(connections).where(mine).values(period=_last_month(), spent=USD)) == 1
    # Read: last month's spend is not this month's.
    assert await _balance(store, keys.app_id, user_id) == (USD, 0, 0)
    # Reserve: the whole cap is available again, and the row is rolled over in the same statement.
    held = await _reserve(store, _request(keys.app_id, user_id, USD))
    assert held.amount == USD and held.connection.spent == 0
    [(period, spent)] = await _sql(store, select(connections.c.period, connections.c.spent).where(mine))
    assert (period, spent) == (period_of(time.time()), 0)


def test_each_moment_falls_in_its_own_month_whichever_was_asked_before() -> None:
    end_of_november = datetime(2026, 12, 1, tzinfo=UTC).timestamp() - 0.5
    moments = [end_of_november, end_of_november + 0.5, end_of_november, end_of_november + 31 * 86400 + 0.5]
    assert [period_of(moment) for moment in moments] == ["2026-11", "2026-12", "2026-11", "2027-01"]


async def test_the_period_resets_for_status_over_http(harness: Harness, user_id: str) -> None:
    await harness.connect(user_id, monthly_usd=10)
    table = connections.c
    mine = (table.app_id == harness.keys.app_id) & (table.app_user_id == user_id)
    await run_sql(
        harness.embed,
        lambda db: db.execute(update(connections).where(mine).values(period=_last_month(), spent=9 * USD)),
    )
    status = await harness.server_status(user_id)
    assert (status["spentUsd"], status["remainingUsd"]) == (0, 10)


async def test_a_settle_in_a_new_month_charges_the_new_month(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, 200_000))
    mine = (connections.c.app_id == keys.app_id) & (connections.c.app_user_id == user_id)
    await _sql(store, update(connections).where(mine).values(period=_last_month(), spent=500_000))
    assert await store.settle(held.ledger_id, 50_000, "reported", int(time.time()))
    assert await _balance(store, keys.app_id, user_id) == (USD, 50_000, 0)


# -- orphans and reconciliation ---------------------------------------------------------------------------


async def test_sweep_charges_orphaned_holds_and_frees_reserved(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    # Holds whose process died: they expired a few seconds ago (a negative TTL, so the real clock applies).
    orphan_a = await _reserve(store, _request(keys.app_id, user_id, 100_000, ttl=-5))
    orphan_b = await _reserve(store, _request(keys.app_id, user_id, 50_000, ttl=-5))
    alive = await _reserve(store, _request(keys.app_id, user_id, 70_000))
    swept = await store.sweep_expired(int(time.time()))
    assert swept >= 2
    assert await _balance(store, keys.app_id, user_id) == (USD, 150_000, 70_000)
    states = {
        entry.id: (entry.state, entry.cost, entry.cost_source) for entry in await store.ledger(keys.app_id, user_id)
    }
    assert states[orphan_a.ledger_id] == ("expired", 100_000, "estimated")
    assert states[orphan_b.ledger_id] == ("expired", 50_000, "estimated")
    assert states[alive.ledger_id][0] == "reserved"
    # A second sweep finds nothing of ours.
    await store.sweep_expired(int(time.time()))
    assert await _balance(store, keys.app_id, user_id) == (USD, 150_000, 70_000)


async def test_a_late_settle_after_a_sweep_applies_only_the_difference(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    lower = await _reserve(store, _request(keys.app_id, user_id, 100_000, ttl=-5))
    higher = await _reserve(store, _request(keys.app_id, user_id, 100_000, ttl=-5))
    await store.sweep_expired(int(time.time()))
    assert await _balance(store, keys.app_id, user_id) == (USD, 200_000, 0)
    now = int(time.time())
    assert await store.settle(lower.ledger_id, 40_000, "reported", now) is True
    assert await _balance(store, keys.app_id, user_id) == (USD, 140_000, 0)
    assert await store.settle(higher.ledger_id, 110_000, "reported", now) is True
    assert await _balance(store, keys.app_id, user_id) == (USD, 150_000, 0)
    assert await store.settle(lower.ledger_id, 40_000, "reported", now) is False
    assert await _balance(store, keys.app_id, user_id) == (USD, 150_000, 0)
    assert {entry.state for entry in await store.ledger(keys.app_id, user_id)} == {"settled"}


async def test_reconcile_applies_the_difference_once(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, 200_000))
    now = int(time.time())
    await store.settle(held.ledger_id, 200_000, "estimated", now, generation_id="gen-9", reconcile=True)
    pending = [entry.id for entry in await store.pending_reconciliations(10_000)]
    assert held.ledger_id in pending
    assert await store.reconcile(held.ledger_id, 80_000, now) is True
    assert await _balance(store, keys.app_id, user_id) == (USD, 80_000, 0)
    assert await store.reconcile(held.ledger_id, 10_000, now) is False
    assert await _balance(store, keys.app_id, user_id) == (USD, 80_000, 0)
    [entry] = await store.ledger(keys.app_id, user_id)
    assert (entry.cost, entry.cost_source, entry.reconcile) == (80_000, "reported", False)
    assert held.ledger_id not in [entry.id for entry in await store.pending_reconciliations(10_000)]


async def test_reconcile_refuses_rows_not_marked_for_it(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, 200_000))
    now = int(time.time())
    assert await store.reconcile(held.ledger_id, 1, now) is False  # still reserved
    await store.settle(held.ledger_id, 150_000, "reported", now)
    assert await store.reconcile(held.ledger_id, 1, now) is False  # reported already
    assert await _balance(store, keys.app_id, user_id) == (USD, 150_000, 0)


# -- connections and caps ---------------------------------------------------------------------------------


async def test_lower_cap_only_lowers_and_only_active_connections(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    now = int(time.time())
    assert await store.lower_cap(keys.app_id, user_id, USD, now) is None
    await _connect(store, keys.app_id, user_id, 5 * USD)
    assert await store.lower_cap(keys.app_id, user_id, 6 * USD, now) is None
    lowered = await store.lower_cap(keys.app_id, user_id, 2 * USD, now)
    assert lowered is not None and lowered.monthly_cap == 2 * USD
    raised = await store.set_cap(keys.app_id, user_id, 8 * USD, now)
    assert raised is not None and raised.monthly_cap == 8 * USD
    await store.set_status(keys.app_id, user_id, ConnectionState.REVOKED, now, drop_credential=True)
    assert await store.lower_cap(keys.app_id, user_id, USD, now) is None


async def test_reconnect_keeps_spend_and_replaces_the_grant(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    held = await _reserve(store, _request(keys.app_id, user_id, 300_000))
    await store.settle(held.ledger_id, 300_000, "reported", int(time.time()))
    await store.set_status(keys.app_id, user_id, ConnectionState.REVOKED, int(time.time()), drop_credential=True)
    again = await store.save_connection(
        NewConnection(keys.app_id, user_id, "dev", 2 * USD, "v1.new", grant_id=f"grant-{keys.app_id}"), int(time.time())
    )
    assert again.status is ConnectionState.ACTIVE
    assert (again.monthly_cap, again.spent, again.grant_id, again.sealed_credential) == (
        2 * USD,
        300_000,
        f"grant-{keys.app_id}",
        "v1.new",
    )
    found = await store.find_connection_by_grant(f"grant-{keys.app_id}", int(time.time()))
    assert found is not None and found.app_user_id == user_id


async def test_concurrent_first_connections_of_one_user_make_one_row(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    now = int(time.time())
    saved = await asyncio.gather(
        *(
            store.save_connection(NewConnection(keys.app_id, user_id, "dev", (index + 1) * USD, "v1.x"), now)
            for index in range(5)
        )
    )
    assert len({record.id for record in saved}) == 1
    rows = await _sql(
        store, select(connections.c.id).where(connections.c.app_id == keys.app_id, connections.c.app_user_id == user_id)
    )
    assert len(rows) == 1


async def test_consent_requests_are_consumed_once_from_their_browser_before_expiry(
    store: SqlStore, keys: AppKeys, user_id: str
) -> None:
    from wattfare_embed.store import ConsentRequest

    now = int(time.time())

    def request(state: str, expires_at: int) -> ConsentRequest:
        return ConsentRequest(
            state=state,
            app_id=keys.app_id,
            app_user_id=user_id,
            authority="dev",
            verifier="v" * 43,
            requested_cap=USD,
            return_to="/",
            mode="popup",
            redirect_uri="http://app.example/wattfare/callback",
            browser_hash="right",
            created_at=now,
            expires_at=expires_at,
        )

    await store.create_consent_request(request(f"{keys.app_id}-live", now + 600))
    await store.create_consent_request(request(f"{keys.app_id}-old", now - 1))
    assert await store.consume_consent_request(f"{keys.app_id}-live", "wrong", now) is None
    used = await store.consume_consent_request(f"{keys.app_id}-live", "right", now)
    assert used is not None and used.used_at == now and used.app_user_id == user_id
    assert await store.consume_consent_request(f"{keys.app_id}-live", "right", now) is None
    assert await store.consume_consent_request(f"{keys.app_id}-old", "right", now) is None
    concurrent = await asyncio.gather(
        *(store.consume_consent_request(f"{keys.app_id}-race", "right", now) for _ in range(5))
    )
    assert concurrent == [None] * 5
    await store.create_consent_request(request(f"{keys.app_id}-race", now + 600))
    concurrent = await asyncio.gather(
        *(store.consume_consent_request(f"{keys.app_id}-race", "right", now) for _ in range(10))
    )
    assert sum(result is not None for result in concurrent) == 1


async def test_a_webhook_event_is_applied_once_even_when_delivered_concurrently(store: SqlStore, keys: AppKeys) -> None:
    now = int(time.time())
    await store.save_connection(
        NewConnection(keys.app_id, "ada", "hosted", 10_000_000, "v1.x", grant_id=f"grt_{keys.app_id}"), now
    )
    change = GrantChange(keys.app_id, f"evt_{keys.app_id}", f"grt_{keys.app_id}", False, 4_000_000, 10**9)
    outcomes = await asyncio.gather(*(store.apply_grant_change(change, now) for _ in range(5)))
    assert [outcome.applied for outcome in outcomes].count(True) == 1
    assert [outcome.duplicate for outcome in outcomes].count(True) == 4
    assert (await store.apply_grant_change(change, now)).duplicate
    record = await store.get_connection(keys.app_id, "ada", now)
    assert record is not None and record.monthly_cap == 4_000_000


async def test_open_is_idempotent_and_tables_are_prefixed(database_url: str) -> None:
    store = SqlStore(database_url)
    await store.open()
    await store.open()
    await store.close()
    await store.close()
    reopened = SqlStore(database_url)
    await reopened.open()  # the tables exist already: migrating again is a no-op
    await reopened.close()
    assert metadata.tables and all(name.startswith("wattfare_") for name in metadata.tables)


async def test_the_store_must_be_opened_first(sqlite_url: str) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await SqlStore(sqlite_url).get_connection("a", "b", 0)


async def test_sqlite_runs_in_wal_mode(sqlite_url: str, tmp_path: Path) -> None:
    store = SqlStore(sqlite_url)
    await store.open()
    try:
        mode = await store._run_handle().run(lambda db: db.exec_driver_sql("PRAGMA journal_mode").scalar())
    finally:
        await store.close()
    # Waiting for another process's write lock (the busy timeout) is covered in test_sqlite_runner.py.
    assert mode == "wal"


# -- sealed credentials ------------------------------------------------------------------------------------

FUNDING_KEY = "sk-or-v1-" + "d3adb33f" * 8


async def test_credentials_are_sealed_at_rest_and_never_returned(
    keys: AppKeys, database_url: str, user_id: str, tmp_path: Path
) -> None:
    embed = make_embed(keys, database_url, upstream_api_key=FUNDING_KEY)
    async with running(embed) as harness:
        result = await harness.connect(user_id)
        assert FUNDING_KEY not in str(result)
        token = await harness.session(user_id)
        for response in (
            await harness.browser.get("/api/v1/connections", headers={"authorization": f"Bearer {token}"}),
            await harness.browser.get("/api/v1/status", params={"appUserId": user_id}, headers=harness.server_auth),
        ):
            assert FUNDING_KEY not in response.text and "v1." not in response.text
        [(stored,)] = await run_sql(
            embed,
            lambda db: db.execute(
                select(connections.c.credential).where(
                    connections.c.app_id == keys.app_id, connections.c.app_user_id == user_id
                )
            ).all(),
        )
        assert stored.startswith("v1.") and FUNDING_KEY not in stored and "d3adb33f" not in stored
        record = await embed.store.get_connection(keys.app_id, user_id, int(time.time()))
        assert record is not None and embed.open_credential(record) == FUNDING_KEY
    if database_url.startswith("sqlite"):
        files = list(tmp_path.glob("wattfare.db*"))
        assert files
        for path in files:
            assert b"d3adb33f" not in path.read_bytes()


async def test_a_sealed_credential_copied_to_another_user_does_not_open(
    keys: AppKeys, database_url: str, user_id: str
) -> None:
    async with running(make_embed(keys, database_url, upstream_api_key=FUNDING_KEY)) as harness:
        embed = harness.embed
        await harness.connect(user_id)
        await harness.connect("second-user")
        table = connections.c
        [(victims,)] = await run_sql(
            embed,
            lambda db: db.execute(
                select(table.credential).where(table.app_id == keys.app_id, table.app_user_id == user_id)
            ).all(),
        )
        await run_sql(
            embed,
            lambda db: db.execute(
                update(connections)
                .where(table.app_id == keys.app_id, table.app_user_id == "second-user")
                .values(credential=victims)
            ),
        )
        copied = await embed.store.get_connection(keys.app_id, "second-user", int(time.time()))
        assert copied is not None and copied.sealed_credential == victims
        # Bound to its owner: the copy does not decrypt (and the embed treats it as missing).
        with pytest.raises(InvalidTag):
            embed.credentials.open(victims, f"{keys.app_id}/second-user")
        assert embed.open_credential(copied) is None
        original = await embed.store.get_connection(keys.app_id, user_id, int(time.time()))
        assert original is not None and embed.open_credential(original) == FUNDING_KEY


def test_the_credential_box_binds_to_the_key_and_the_owner() -> None:
    box = CredentialBox("sk_test_app1_" + "a" * 40)
    sealed = box.seal("secret-credential", "app1/alice")
    assert sealed.startswith("v1.") and "secret-credential" not in sealed
    assert box.seal("secret-credential", "app1/alice") != sealed  # a fresh nonce each time
    assert box.open(sealed, "app1/alice") == "secret-credential"
    with pytest.raises(InvalidTag):
        box.open(sealed, "app1/bob")
    with pytest.raises(InvalidTag):
        CredentialBox("sk_test_app1_" + "b" * 40).open(sealed, "app1/alice")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises((InvalidTag, ValueError)):
        box.open(tampered, "app1/alice")
    with pytest.raises(ValueError, match="unknown credential format"):
        box.open("v2." + sealed[3:], "app1/alice")


async def test_a_separate_credential_key_seals_credentials(keys: AppKeys, sqlite_url: str, user_id: str) -> None:
    separate = "credential-key-" + "z" * 40
    async with running(make_embed(keys, sqlite_url, upstream_api_key=FUNDING_KEY, credential_key=separate)) as harness:
        await harness.connect(user_id)
        record = await harness.embed.store.get_connection(keys.app_id, user_id, int(time.time()))
        assert record is not None and record.sealed_credential is not None
        assert CredentialBox(separate).open(record.sealed_credential, f"{keys.app_id}/{user_id}") == FUNDING_KEY
        with pytest.raises(InvalidTag):
            CredentialBox(keys.secret_key).open(record.sealed_credential, f"{keys.app_id}/{user_id}")


async def test_the_ledger_is_append_only_per_request(store: SqlStore, keys: AppKeys, user_id: str) -> None:
    await _connect(store, keys.app_id, user_id, USD)
    for _ in range(3):
        held = await _reserve(store, _request(keys.app_id, user_id, 10_000))
        await store.settle(held.ledger_id, 5_000, "reported", int(time.time()))
    rows = await _sql(store, select(ledger.c.id).where(ledger.c.app_id == keys.app_id))
    assert len(rows) == 3


async def _overwrite_credential(embed: Any, app_id: str, user: str, sealed: str) -> None:
    table = connections.c
    await run_sql(
        embed,
        lambda db: db.execute(
            update(connections).where(table.app_id == app_id, table.app_user_id == user).values(credential=sealed)
        ),
    )


async def test_reconnecting_over_a_credential_that_no_longer_opens_still_connects(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    revoked: list[tuple[str | None, str | None]] = []

    class RecordingConsent(DevConsent):
        async def revoke(self, credential: str | None, grant_id: str | None, context: AuthorityContext) -> None:
            revoked.append((credential, grant_id))

    embed = make_embed(keys, sqlite_url, consent=RecordingConsent())
    async with running(embed) as harness:
        await harness.connect(user_id, monthly_usd=5)
        before = await embed.store.get_connection(keys.app_id, user_id, int(time.time()))
        assert before is not None
        # Sealed under a key this embed no longer has (a rotated credential_key).
        rotated = CredentialBox("an-old-credential-key-" + "q" * 30).seal("old", f"{keys.app_id}/{user_id}")
        await _overwrite_credential(embed, keys.app_id, user_id, rotated)
        result = await harness.connect(user_id, monthly_usd=7)
        assert result["error"] is None and result["status"]["monthlyUsd"] == 7
        assert revoked == [(None, before.grant_id)]


async def test_disconnecting_a_credential_that_no_longer_opens_still_revokes(
    keys: AppKeys, sqlite_url: str, user_id: str
) -> None:
    async with running(make_embed(keys, sqlite_url)) as harness:
        await harness.connect(user_id)
        rotated = CredentialBox("an-old-credential-key-" + "q" * 30).seal("old", f"{keys.app_id}/{user_id}")
        await _overwrite_credential(harness.embed, keys.app_id, user_id, rotated)
        token = await harness.session(user_id)
        response = await harness.browser.delete("/api/v1/connections", headers={"authorization": f"Bearer {token}"})
        assert (await harness.server_status(user_id))["status"] == "revoked"
        assert response.status_code == 204
