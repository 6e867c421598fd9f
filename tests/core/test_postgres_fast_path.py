"""PostgreSQL's fast path: ``reserve`` and ``settle`` as one asyncpg statement each, same semantics.

``SqlStore`` on PostgreSQL through asyncpg runs these two outside SQLAlchemy (``store/_postgres.py``).
These tests pin that it is the path taken, that it is exactly as safe under concurrency (including a
lock wait, where PostgreSQL re-reads the newest row), and that it leaves the same books as the
portable path, step by step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import update

from tests.conftest import POSTGRES_URL, postgres_reachable, require_postgres
from wattfare_embed import SqlStore
from wattfare_embed.periods import period_of
from wattfare_embed.store import ConnectionState, NewConnection, Refusal, Reservation, ReservationRequest
from wattfare_embed.store._postgres import PostgresFastPath, _connect_kwargs, _fast_path_options, asyncpg_url
from wattfare_embed.store.schema import connections
from wattfare_embed.testing.waiting import poll

pytestmark = pytest.mark.postgres

# Fixed clocks in two consecutive months (the store takes `now` from its caller).
MARCH = int(datetime(2025, 3, 20, 12, tzinfo=UTC).timestamp())
APRIL = int(datetime(2025, 4, 2, 12, tzinfo=UTC).timestamp())


async def _open(url: str = POSTGRES_URL, *, fast: bool = True) -> SqlStore:
    require_postgres()
    store = SqlStore(url)
    await store.open()
    if not fast:  # the portable SQLAlchemy path, on the same database, for comparison
        assert store._postgres is not None
        await store._postgres.close()
        store._postgres = None
    return store


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    opened = await _open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def app_id() -> AsyncIterator[str]:
    """A fresh app per test; its rows are deleted afterwards (their clocks are in the past, and another
    test's sweeper would otherwise charge their open holds, or trip on what a test did by hand)."""
    app = "pg" + uuid.uuid4().hex[:12]
    yield app
    if not postgres_reachable():
        return
    cleaner = await _raw()
    try:
        apps = [app, app + "p"]
        async with cleaner.transaction():
            await cleaner.execute("DELETE FROM wattfare_ledger WHERE app_id = ANY($1::varchar[])", apps)
            await cleaner.execute("DELETE FROM wattfare_connections WHERE app_id = ANY($1::varchar[])", apps)
    finally:
        await cleaner.close()


async def _connect(store: SqlStore, app_id: str, user: str, cap: int, now: int = MARCH) -> None:
    await store.save_connection(NewConnection(app_id, user, "dev", cap, "v1.sealed"), now)


def _request(app_id: str, user: str, wanted: int, minimum: int | None = None, ttl: int = 3600) -> ReservationRequest:
    return ReservationRequest(app_id, user, wanted, wanted if minimum is None else minimum, "chat", "test/model", ttl)


async def _reserve(store: SqlStore, request: ReservationRequest, now: int = MARCH) -> Reservation:
    held = await store.reserve(request, now)
    assert isinstance(held, Reservation), held
    return held


async def _balance(store: SqlStore, app_id: str, user: str, now: int = MARCH) -> tuple[int, int]:
    record = await store.get_connection(app_id, user, now)
    assert record is not None
    return record.spent, record.reserved


async def _raw() -> Any:
    """A plain asyncpg connection of the test's own, to hold locks the store has to wait for."""
    url = asyncpg_url(POSTGRES_URL)
    assert url is not None
    return await asyncpg.connect(**_connect_kwargs(url))


async def _blocked_by(probe: Any, locker: Any) -> None:
    """Wait until some backend is waiting for a lock ``locker`` holds."""

    async def waiting() -> bool | None:
        count = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))",
            locker.get_server_pid(),
        )
        return True if count else None

    await poll(waiting, what="the store's statement to wait for the row lock", timeout=10)


# -- the path taken ---------------------------------------------------------------------------------


class _Counting:
    """Wraps an object and counts calls of the named coroutine methods."""

    def __init__(self, inner: Any, *names: str) -> None:
        self._inner = inner
        self.calls = 0
        for name in names:
            setattr(self, name, self._counted(getattr(inner, name)))

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await method(*args, **kwargs)

        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_reserve_and_settle_are_one_asyncpg_statement_each_and_bypass_sqlalchemy(
    store: SqlStore, app_id: str
) -> None:
    await _connect(store, app_id, "u", 100_000)
    assert store._postgres is not None and store._runner is not None
    runner = _Counting(store._runner, "run")
    pool = _Counting(store._postgres._pool, "fetchrow", "fetchval", "fetch", "execute")
    store._runner, store._postgres._pool = runner, pool

    held = await _reserve(store, _request(app_id, "u", 30_000))
    assert (runner.calls, pool.calls) == (0, 1)
    assert await store.settle(held.ledger_id, 10_000, "reported", MARCH) is True
    assert (runner.calls, pool.calls) == (0, 2)
    assert await store.settle(held.ledger_id, 10_000, "reported", MARCH) is False
    assert await store.reserve(_request(app_id, "u", 100_000), MARCH) == Refusal.BUDGET_EXCEEDED
    assert await store.reserve(_request(app_id, "nobody", 1), MARCH) == Refusal.NOT_CONNECTED
    assert (runner.calls, pool.calls) == (0, 5)  # refusals too: no follow-up read
    # Everything else stays on SQLAlchemy.
    assert await _balance(store, app_id, "u") == (10_000, 0)
    assert (runner.calls, pool.calls) == (1, 5)


async def test_only_postgresql_through_asyncpg_takes_the_fast_path(tmp_path: Any) -> None:
    plain = await _open(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        assert plain._postgres is not None
    finally:
        await plain.close()
    assert plain._postgres is None  # closed with the store
    lite = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await lite.open()
    try:
        assert lite._postgres is None
    finally:
        await lite.close()
    assert asyncpg_url("postgresql+psycopg://u@h/d") is None
    assert asyncpg_url("sqlite:///x.db") is None


def test_the_pool_connects_as_the_url_says() -> None:
    url = asyncpg_url("postgres://alice:p%40ss@db.internal:6543/money?ssl=require&prepared_statement_cache_size=0")
    assert url is not None
    assert _connect_kwargs(url) == {
        "user": "alice",
        "password": "p@ss",
        "host": "db.internal",
        "port": 6543,
        "database": "money",
        "ssl": "require",
        "statement_cache_size": 0,  # SQLAlchemy's name for it (e.g. behind PgBouncer), honoured too
    }


def test_fast_path_connections_read_committed_and_keep_their_prepared_statements() -> None:
    url = asyncpg_url("postgresql+asyncpg://alice@db.internal/money")
    assert url is not None
    options = _fast_path_options(url)
    assert options["server_settings"] == {"default_transaction_isolation": "read committed"}
    # Never dropped from asyncpg's cache (by default every 300 s): no re-prepare, no fresh planning.
    assert options["max_cached_statement_lifetime"] == 0
    the_urls = {
        key: value for key, value in options.items() if key not in ("server_settings", "max_cached_statement_lifetime")
    }
    assert the_urls == _connect_kwargs(url)


async def test_the_pool_opens_the_database_named_in_the_url() -> None:
    require_postgres()
    url = asyncpg_url(POSTGRES_URL.rsplit("/", 1)[0] + "/wattfare_no_such_database")
    assert url is not None
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await PostgresFastPath.open(url)


# -- concurrency ------------------------------------------------------------------------------------


async def test_200_concurrent_reserves_never_pass_the_cap(store: SqlStore, app_id: str) -> None:
    cap, each = 1_000_000, 7_000  # room for exactly 142 of 200
    await _connect(store, app_id, "u", cap)
    results = await asyncio.gather(*(store.reserve(_request(app_id, "u", each), MARCH) for _ in range(200)))
    granted = [result for result in results if isinstance(result, Reservation)]
    assert len(granted) == 142 and {held.amount for held in granted} == {each}
    assert [result for result in results if not isinstance(result, Reservation)] == [Refusal.HELD_IN_FLIGHT] * 58
    assert await _balance(store, app_id, "u") == (0, 142 * each)
    # Each grant saw the row as it stood after the grants before it: the reads are serialised.
    assert sorted(held.connection.reserved for held in granted) == [i * each for i in range(142)]
    entries = await store.ledger(app_id, "u", limit=500)
    assert sorted(entry.id for entry in entries) == sorted(held.ledger_id for held in granted)
    assert {(entry.state, entry.reserved) for entry in entries} == {("reserved", each)}


async def test_200_concurrent_partial_reserves_fill_the_cap_exactly(store: SqlStore, app_id: str) -> None:
    cap = 1_000_000
    await _connect(store, app_id, "u", cap)
    results = await asyncio.gather(*(store.reserve(_request(app_id, "u", 9_000, minimum=1), MARCH) for _ in range(200)))
    granted = [result for result in results if isinstance(result, Reservation)]
    assert len(granted) == 112  # 111 whole holds and one clamped to the 1_000 left
    assert sorted(held.amount for held in granted) == [1_000] + [9_000] * 111
    assert await _balance(store, app_id, "u") == (0, cap)


async def test_concurrent_reserves_and_settles_keep_the_books_exact(store: SqlStore, app_id: str) -> None:
    cap = 500_000
    await _connect(store, app_id, "u", cap)

    async def one_request(cost: int) -> int:
        held = await store.reserve(_request(app_id, "u", 30_000), MARCH)
        if not isinstance(held, Reservation):
            return 0
        await asyncio.sleep(0)
        assert await store.settle(held.ledger_id, cost, "reported", MARCH)
        return cost

    charged = sum(await asyncio.gather(*(one_request(10_000 + 97 * i) for i in range(150))))
    spent, reserved = await _balance(store, app_id, "u")
    assert (spent, reserved) == (charged, 0)
    assert charged <= cap
    entries = await store.ledger(app_id, "u", limit=500)
    assert sum(entry.cost or 0 for entry in entries) == charged
    assert {entry.state for entry in entries} == {"settled"}


async def test_a_reservation_settles_exactly_once_even_when_settled_concurrently(store: SqlStore, app_id: str) -> None:
    await _connect(store, app_id, "u", 100_000)
    held = await _reserve(store, _request(app_id, "u", 40_000))
    outcomes = await asyncio.gather(
        *(store.settle(held.ledger_id, 25_000, "reported", MARCH) for _ in range(20)),
    )
    assert sorted(outcomes) == [False] * 19 + [True]
    assert await store.settle(held.ledger_id, 25_000, "reported", MARCH) is False
    assert await _balance(store, app_id, "u") == (25_000, 0)
    assert await store.settle("req_no_such_entry", 25_000, "reported", MARCH) is False


async def test_a_reserve_that_waited_for_the_lock_sees_room_freed_meanwhile(store: SqlStore, app_id: str) -> None:
    await _connect(store, app_id, "u", 100_000)
    full = await _reserve(store, _request(app_id, "u", 100_000))
    locker, probe = await _raw(), await _raw()
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute(
            "SELECT 1 FROM wattfare_connections WHERE app_id = $1 AND app_user_id = 'u' FOR UPDATE", app_id
        )
        waiting = asyncio.ensure_future(store.reserve(_request(app_id, "u", 60_000), MARCH))
        await _blocked_by(probe, locker)
        # What a settle releasing the hold does. The statement's snapshot still shows the row full.
        await locker.execute("UPDATE wattfare_ledger SET state = 'released', cost = 0 WHERE id = $1", full.ledger_id)
        await locker.execute(
            "UPDATE wattfare_connections SET reserved = reserved - 100000 WHERE app_id = $1 AND app_user_id = 'u'",
            app_id,
        )
        await transaction.commit()
        held = await asyncio.wait_for(waiting, 10)
    finally:
        await locker.close()
        await probe.close()
    assert isinstance(held, Reservation), held
    assert (held.amount, held.connection.reserved) == (60_000, 0)
    assert await _balance(store, app_id, "u") == (0, 60_000)


@pytest.mark.parametrize(("minimum", "expected"), [(50_000, Refusal.HELD_IN_FLIGHT), (1, 20_000)])
async def test_a_reserve_that_waited_for_the_lock_never_uses_room_taken_meanwhile(
    store: SqlStore, app_id: str, minimum: int, expected: Refusal | int
) -> None:
    await _connect(store, app_id, "u", 100_000)
    locker, probe = await _raw(), await _raw()
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute(
            "SELECT 1 FROM wattfare_connections WHERE app_id = $1 AND app_user_id = 'u' FOR UPDATE", app_id
        )
        waiting = asyncio.ensure_future(store.reserve(_request(app_id, "u", 50_000, minimum=minimum), MARCH))
        await _blocked_by(probe, locker)
        # Another process's reservation lands first; the waiting statement's snapshot predates it.
        await locker.execute(
            "UPDATE wattfare_connections SET reserved = 80000 WHERE app_id = $1 AND app_user_id = 'u'", app_id
        )
        await transaction.commit()
        result = await asyncio.wait_for(waiting, 10)
    finally:
        await locker.close()
        await probe.close()
    if isinstance(expected, Refusal):
        assert result == expected
        assert await _balance(store, app_id, "u") == (0, 80_000)
        assert await store.ledger(app_id, "u") == []
    else:
        assert isinstance(result, Reservation) and result.amount == expected  # clamped to the newest headroom
        assert result.connection.reserved == 80_000
        assert await _balance(store, app_id, "u") == (0, 100_000)


@pytest.mark.parametrize("other", ["sweep", "settle"])
async def test_a_settle_that_waited_for_the_lock_applies_what_is_left_to_apply(
    store: SqlStore, app_id: str, other: str
) -> None:
    await _connect(store, app_id, "u", 1_000_000)
    held = await _reserve(store, _request(app_id, "u", 100_000))
    locker, probe = await _raw(), await _raw()
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("SELECT 1 FROM wattfare_ledger WHERE id = $1 FOR UPDATE", held.ledger_id)
        waiting = asyncio.ensure_future(store.settle(held.ledger_id, 30_000, "reported", MARCH))
        await _blocked_by(probe, locker)
        # The sweeper (the whole hold charged) or another settle (70_000) finalises the entry first.
        state, cost = ("expired", 100_000) if other == "sweep" else ("settled", 70_000)
        await locker.execute(
            "UPDATE wattfare_ledger SET state = $2, cost = $3, settled_at = 1 WHERE id = $1",
            held.ledger_id,
            state,
            cost,
        )
        await locker.execute(
            "UPDATE wattfare_connections SET spent = spent + $2, reserved = reserved - 100000"
            " WHERE app_id = $1 AND app_user_id = 'u'",
            app_id,
            cost,
        )
        await transaction.commit()
        settled = await asyncio.wait_for(waiting, 10)
    finally:
        await locker.close()
        await probe.close()
    [entry] = await store.ledger(app_id, "u")
    if other == "sweep":  # a late settle after a sweep applies only the difference
        assert settled is True
        assert await _balance(store, app_id, "u") == (30_000, 0)
        assert (entry.state, entry.cost, entry.cost_source) == ("settled", 30_000, "reported")
    else:  # already final: nothing changes
        assert settled is False
        assert await _balance(store, app_id, "u") == (70_000, 0)
        assert (entry.state, entry.cost) == ("settled", 70_000)


# -- the rules ----------------------------------------------------------------------------------------


async def test_refusals_say_why(store: SqlStore, app_id: str) -> None:
    assert await store.reserve(_request(app_id, "nobody", 1), MARCH) == Refusal.NOT_CONNECTED
    for user, status in (("r", ConnectionState.REVOKED), ("f", ConnectionState.FUNDING_INVALID)):
        await _connect(store, app_id, user, 100_000)
        await store.set_status(app_id, user, status, MARCH, drop_credential=False)
        assert await store.reserve(_request(app_id, user, 1), MARCH) == Refusal(status.value)
    await _connect(store, app_id, "u", 100_000)
    held = await _reserve(store, _request(app_id, "u", 70_000))
    # Only the hold in flight stands in the way: it would fit once that request settles.
    assert await store.reserve(_request(app_id, "u", 40_000, minimum=30_001), MARCH) == Refusal.HELD_IN_FLIGHT
    clamped = await _reserve(store, _request(app_id, "u", 40_000, minimum=30_000))
    assert clamped.amount == 30_000
    assert await store.reserve(_request(app_id, "u", 1, minimum=0), MARCH) == Refusal.HELD_IN_FLIGHT  # no room now
    assert await _balance(store, app_id, "u") == (0, 100_000)
    assert len(await store.ledger(app_id)) == 2
    await store.settle(held.ledger_id, 70_000, "reported", MARCH)
    # Spent for good: no retry can help.
    assert await store.reserve(_request(app_id, "u", 40_000, minimum=30_001), MARCH) == Refusal.BUDGET_EXCEEDED


async def test_an_expired_entry_settles_the_difference_once(store: SqlStore, app_id: str) -> None:
    await _connect(store, app_id, "u", 1_000_000)
    lower = await _reserve(store, _request(app_id, "u", 100_000, ttl=10))
    higher = await _reserve(store, _request(app_id, "u", 100_000, ttl=10))
    await store.sweep_expired(MARCH + 11)
    assert await _balance(store, app_id, "u") == (200_000, 0)
    assert await store.settle(lower.ledger_id, 40_000, "reported", MARCH + 20) is True
    assert await _balance(store, app_id, "u") == (140_000, 0)
    assert await store.settle(higher.ledger_id, 110_000, "reported", MARCH + 20, generation_id="gen-h") is True
    assert await _balance(store, app_id, "u") == (150_000, 0)
    assert await store.settle(lower.ledger_id, 40_000, "reported", MARCH + 30) is False
    assert await _balance(store, app_id, "u") == (150_000, 0)
    entries = {entry.id: entry for entry in await store.ledger(app_id, "u")}
    assert (entries[lower.ledger_id].state, entries[lower.ledger_id].cost) == ("settled", 40_000)
    assert entries[higher.ledger_id].generation_id == "gen-h"
    assert entries[lower.ledger_id].settled_at == MARCH + 20


async def test_a_refund_below_zero_spend_stops_at_zero(store: SqlStore, app_id: str) -> None:
    await _connect(store, app_id, "u", 1_000_000)
    held = await _reserve(store, _request(app_id, "u", 100_000, ttl=10))
    await store.sweep_expired(MARCH + 11)
    await _sql_set_spent(store, app_id, 30_000)  # e.g. lowered by a reconcile meanwhile
    assert await store.settle(held.ledger_id, 0, "reported", MARCH + 20) is True
    assert await _balance(store, app_id, "u") == (0, 0)


async def _sql_set_spent(store: SqlStore, app_id: str, spent: int) -> None:
    await store._run_handle().run(
        lambda db: db.execute(update(connections).where(connections.c.app_id == app_id).values(spent=spent))
    )


async def test_the_period_rolls_over_lazily(store: SqlStore, app_id: str) -> None:
    await _connect(store, app_id, "u", 100_000)
    first = await _reserve(store, _request(app_id, "u", 60_000), MARCH)
    assert await store.settle(first.ledger_id, 60_000, "reported", MARCH)
    assert await store.reserve(_request(app_id, "u", 50_000), MARCH) == Refusal.BUDGET_EXCEEDED
    straddling = await _reserve(store, _request(app_id, "u", 40_000), MARCH)  # held in March...

    # April: March's spend no longer counts, only the hold still open does.
    fresh = await _reserve(store, _request(app_id, "u", 60_000), APRIL)
    assert fresh.connection.period == period_of(APRIL) == "2025-04"
    assert (fresh.connection.spent, fresh.connection.reserved) == (0, 40_000)
    assert await _balance(store, app_id, "u", APRIL) == (0, 100_000)
    # ... settled in April: charged to April.
    assert await store.settle(straddling.ledger_id, 15_000, "reported", APRIL)
    assert await _balance(store, app_id, "u", APRIL) == (15_000, 60_000)
    [entry] = [entry for entry in await store.ledger(app_id, "u") if entry.id == straddling.ledger_id]
    assert (entry.state, entry.cost, entry.settled_at) == ("settled", 15_000, APRIL)

    # A settle landing in a new month before any reserve there rolls the period too.
    may = int(datetime(2025, 5, 3, tzinfo=UTC).timestamp())
    assert await store.settle(fresh.ledger_id, 5_000, "reported", may)
    assert await _balance(store, app_id, "u", may) == (5_000, 0)


# -- the same books as the portable path ---------------------------------------------------------------


async def _scenario(store: SqlStore, app_id: str) -> list[Any]:
    """A month and a bit of one user's traffic; every result and balance, with the random ids blanked."""
    steps: list[Any] = []

    def blank(result: Any) -> Any:
        if isinstance(result, Reservation):
            connection = dataclasses.replace(result.connection, id="", app_id="")
            return dataclasses.replace(result, ledger_id="", connection=connection)
        return result

    async def reserve(request: ReservationRequest, now: int) -> Reservation | Refusal:
        result = await store.reserve(request, now)
        steps.append(("reserve", blank(result), await _balance(store, app_id, "u", now)))
        return result

    async def settle(held: Reservation | Refusal, now: int, *args: Any, **kwargs: Any) -> None:
        assert isinstance(held, Reservation)
        settled = await store.settle(held.ledger_id, *args, now, **kwargs)
        steps.append(("settle", settled, await _balance(store, app_id, "u", now)))

    await _connect(store, app_id, "u", 100_000, MARCH)
    a = await reserve(_request(app_id, "u", 30_000), MARCH + 1)
    b = await reserve(_request(app_id, "u", 90_000, minimum=1), MARCH + 2)
    await reserve(_request(app_id, "u", 5_000, minimum=1), MARCH + 3)
    await settle(a, MARCH + 4, 10_000, "reported", generation_id="gen-a", tokens_in=120, tokens_out=30)
    await settle(a, MARCH + 5, 10_000, "reported", generation_id="gen-a", tokens_in=1, tokens_out=1)
    await settle(b, MARCH + 6, 0, "none")
    c = await reserve(_request(app_id, "u", 50_000, ttl=10), MARCH + 7)
    await store.sweep_expired(MARCH + 20)
    steps.append(("swept", await _balance(store, app_id, "u", MARCH + 20)))
    await settle(c, MARCH + 21, 20_000, "estimated", generation_id="gen-c", reconcile=True)
    d = await reserve(_request(app_id, "u", 80_000, minimum=10_000), MARCH + 22)
    e = await reserve(_request(app_id, "u", 80_000, minimum=1), APRIL)  # March's open hold still counts
    await settle(d, APRIL + 1, 75_000, "reported")
    await reserve(_request(app_id, "u", 30_000), APRIL + 2)
    await settle(e, APRIL + 3, 90_000, "reported")
    await store.set_status(app_id, "u", ConnectionState.FUNDING_INVALID, APRIL + 4, drop_credential=False)
    await reserve(_request(app_id, "u", 1), APRIL + 5)
    await reserve(_request(app_id, "nobody", 1), APRIL + 6)
    ledger = sorted(await store.ledger(app_id, limit=100), key=lambda entry: entry.created_at)
    steps.extend(dataclasses.replace(entry, id="") for entry in ledger)
    for period in (period_of(MARCH), period_of(APRIL)):
        receipts = await store.receipts(app_id, "u", period, before=None, limit=100)
        steps.extend(sorted((r.created_at, r.cost, r.tokens_in, r.tokens_out) for r in receipts))
    return steps


async def test_it_keeps_the_same_books_as_the_portable_path(app_id: str) -> None:
    fast, portable = await _open(), await _open(fast=False)
    try:
        assert fast._postgres is not None and portable._postgres is None
        on_fast = await _scenario(fast, app_id)
        on_portable = await _scenario(portable, app_id + "p")
    finally:
        await fast.close()
        await portable.close()
    assert on_fast == on_portable
    assert len(on_fast) == 16 + 5 + 4  # steps, the five ledger entries, the four charged ones' receipts
    assert on_fast[-4][2:] == (120, 30)  # the first settle's counts, kept by the final row
