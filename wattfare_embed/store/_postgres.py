"""PostgreSQL's hot path: ``reserve`` and ``settle`` as one statement each, straight on asyncpg.

Every metered request reserves before it is forwarded and settles after, so these two are the
store's whole share of the proxy's latency. Through SQLAlchemy's async engine each is a
transaction of several statements (BEGIN, the locked read, the writes, COMMIT: a round trip
each, plus the adapter's overhead per statement). Here each is a single data-modifying CTE,
run in autocommit on a connection of the fast path's own pool (``_pg_pool``: no reset query, no
per-use proxy object or shielded release as in ``asyncpg.Pool``): one round trip per step (see
DESIGN.md §10).

Concurrency, under READ COMMITTED: the first CTE reads the row ``FOR UPDATE`` by keys that never
change (the user, the ledger id). When another transaction holds the lock, PostgreSQL waits, then
re-reads the newest version and re-checks the ``WHERE`` before returning it, so every figure the
statement computes from is current, and it stays locked until the statement commits: two
reservations can never both pass a cap, two settles never both apply. The ``UPDATE`` that follows
matches the locked row by id only: PostgreSQL first tests an ``UPDATE``'s conditions on the
version in the statement's snapshot, which after a lock wait is the stale one, and a guard on
values there would skip the row instead of following it to the newest version; by id it follows,
and its ``SET`` works from that newest version, the very one just locked and read.

Only these two operations live here; the tables, the migrations and every other operation stay
on SQLAlchemy. The SQL text is built once, with the table and column names of ``schema.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url

from ._pg_pool import ConnectionPool
from ._statements import SettleRow
from .base import (
    ConnectionRecord,
    ConnectionState,
    Refusal,
    Reservation,
    ReservationRequest,
    Settled,
    SpendAfterCharge,
    refusal_for_headroom,
)
from .pools import PoolSizes
from .schema import connections, ledger

__all__ = ["PostgresFastPath", "asyncpg_url"]

# SQLAlchemy's asyncpg dialect (untyped): its identifier quoting, and its reading of a URL.
_dialect_class: Any = PGDialect_asyncpg
_DIALECT = _dialect_class()
_ACTIVE = ConnectionState.ACTIVE.value
_ACTIVE_STATE = ConnectionState.ACTIVE  # an enum member read from its class costs a lookup each time


class _Names:
    """A table's quoted name and its columns' quoted names (``names.spent``); a typo fails at import."""

    def __init__(self, table: Table) -> None:
        quote: Callable[[str], str] = _DIALECT.identifier_preparer.quote
        self.table = quote(table.name)
        self._columns = {column.key: quote(column.name) for column in table.c}
        self.all = ", ".join(self._columns.values())

    def __getattr__(self, key: str) -> str:
        try:
            return self._columns[key]
        except KeyError:
            raise AttributeError(key) from None


_C = _Names(connections)
_L = _Names(ledger)


def _spent_in_period(alias: str, period: str) -> str:
    """This period's spend; a counter already in a later period keeps its own (periods never move back)."""
    return f"CASE WHEN {alias}.{_C.period} >= {period} THEN {alias}.{_C.spent} ELSE 0 END"


def _latest_period(alias: str, period: str) -> str:
    return f"GREATEST({alias}.{_C.period}, {period})"


# $1 app_id, $2 app_user_id, $3 period, $4 wanted, $5 minimum, $6 now,
# $7 ledger id, $8 kind, $9 model, $10 expires_at.
# Returns the user's row as read (locked) with `spent_now` (this period's spend), `period_now`
# (its period after this write) and `amount`, the hold taken, NULL when none was: no row at all
# means the user is not connected.
RESERVE = f"""
WITH cur AS MATERIALIZED (
    SELECT {_C.all}, {_spent_in_period("c", "$3")} AS spent_now, {_latest_period("c", "$3")} AS period_now
    FROM {_C.table} AS c
    WHERE {_C.app_id} = $1 AND {_C.app_user_id} = $2
    FOR UPDATE
), granted AS MATERIALIZED (
    SELECT {_C.id}, LEAST($4::bigint, {_C.monthly_cap} - spent_now - {_C.reserved}) AS amount
    FROM cur
    WHERE {_C.status} = '{_ACTIVE}'
      AND {_C.monthly_cap} - spent_now - {_C.reserved} > 0
      AND {_C.monthly_cap} - spent_now - {_C.reserved} >= $5::bigint
), held AS (
    UPDATE {_C.table} AS c
    SET {_C.spent} = {_spent_in_period("c", "$3")},
        {_C.period} = {_latest_period("c", "$3")},
        {_C.reserved} = c.{_C.reserved} + g.amount,
        {_C.updated_at} = $6::bigint
    FROM granted AS g
    WHERE c.{_C.id} = g.{_C.id}
    RETURNING c.{_C.id} AS id, g.amount AS amount, c.{_C.period} AS period
), entry AS (
    INSERT INTO {_L.table} (
        {_L.id}, {_L.connection_id}, {_L.app_id}, {_L.app_user_id}, {_L.kind}, {_L.model}, {_L.state},
        {_L.reserved}, {_L.reconcile}, {_L.period}, {_L.created_at}, {_L.expires_at}
    )
    SELECT $7::varchar, held.id, $1, $2, $8::varchar, $9::varchar, 'reserved',
           held.amount, false, held.period, $6::bigint, $10::bigint
    FROM held
)
SELECT cur.*, held.amount FROM cur LEFT JOIN held ON true
"""

# $1 ledger id, $2 final state, $3 cost, $4 cost_source, $5 generation_id, $6 reconcile,
# $7 now, $8 period, $9 tokens_in, $10 tokens_out. Returns one row, `settled`: whether this call
# finalised the entry, and the user's counter as the charge left it (status, monthly_cap, period,
# spent; NULL when nothing was charged), for threshold alerts.
# Only an entry still `reserved` (or `expired`: swept after a stall, its whole hold already
# charged, so only the difference applies) is finalised; the lock makes that exactly once.
# The ledger row records the month the charge landed in: the counter's period once charged.
SETTLE = f"""
WITH open_entry AS MATERIALIZED (
    SELECT {_L.id}, {_L.connection_id}, {_L.state}, {_L.reserved}, {_L.cost},
           CASE WHEN {_L.state} = 'reserved' THEN {_L.reserved} ELSE 0 END AS hold,
           CASE WHEN {_L.state} = 'reserved' THEN 0 ELSE COALESCE({_L.cost}, 0) END AS charged
    FROM {_L.table}
    WHERE {_L.id} = $1 AND {_L.state} IN ('reserved', 'expired')
    FOR UPDATE
), charge AS (
    UPDATE {_C.table} AS c
    SET {_C.spent} = GREATEST(0, {_spent_in_period("c", "$8::varchar")} + $3::bigint - e.charged),
        {_C.period} = {_latest_period("c", "$8::varchar")},
        {_C.reserved} = c.{_C.reserved} - e.hold,
        {_C.updated_at} = $7::bigint
    FROM open_entry AS e
    WHERE c.{_C.id} = e.{_L.connection_id}
    RETURNING c.{_C.period} AS period, c.{_C.status} AS status, c.{_C.monthly_cap} AS monthly_cap,
              c.{_C.spent} AS spent
), final AS (
    UPDATE {_L.table} AS l
    SET {_L.state} = $2::varchar,
        {_L.cost} = $3::bigint,
        {_L.cost_source} = $4::varchar,
        {_L.generation_id} = $5::varchar,
        {_L.reconcile} = $6::boolean,
        {_L.settled_at} = $7::bigint,
        {_L.period} = COALESCE((SELECT period FROM charge), $8::varchar),
        {_L.tokens_in} = $9::bigint,
        {_L.tokens_out} = $10::bigint
    FROM open_entry AS e
    WHERE l.{_L.id} = e.{_L.id}
    RETURNING l.{_L.id}
)
SELECT (SELECT count(*) > 0 FROM final) AS settled, charge.status, charge.monthly_cap, charge.period, charge.spent
FROM (SELECT 1) AS one LEFT JOIN charge ON true
"""


class _Contended(Exception):
    """An active user with headroom got no hold; under the row lock that cannot happen, so this is
    only the portable path's contract kept: retry, and refuse as ``contended`` if it persists."""


def asyncpg_url(database_url: str) -> URL | None:
    """The URL as the store's engine connects with it, if that is PostgreSQL through asyncpg."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+asyncpg")
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "asyncpg":
        return url
    return None


def _connect_kwargs(url: URL) -> dict[str, Any]:
    """What SQLAlchemy would pass to ``asyncpg.connect`` for this URL (user, password, host, port, …)."""
    _args, kwargs = _DIALECT.create_connect_args(url)
    options: dict[str, Any] = dict(kwargs)
    # SQLAlchemy's own names for asyncpg's statement cache; the rest go to asyncpg as they are.
    if "prepared_statement_cache_size" in options:
        options["statement_cache_size"] = options.pop("prepared_statement_cache_size")
    options.pop("prepared_statement_name_func", None)
    return options


def _fast_path_options(url: URL) -> dict[str, Any]:
    """``asyncpg.connect``'s arguments for a fast-path connection: the URL's, and two of its own."""
    options = _connect_kwargs(url)
    # The reasoning above holds under READ COMMITTED, whatever the server's default: a server
    # set to REPEATABLE READ would fail concurrent statements with serialization errors.
    settings = {**(options.pop("server_settings", None) or {}), "default_transaction_isolation": "read committed"}
    # The two statements are prepared once per connection and kept: asyncpg would otherwise drop
    # them from its cache every 300 s, and the next call of each would prepare it again (a round
    # trip) and have it planned afresh five times before PostgreSQL settles on its generic plan
    # (about 2 ms more over the next requests, measured). A URL that sets its own value keeps it.
    options.setdefault("max_cached_statement_lifetime", 0)
    return {**options, "server_settings": settings}


# Serialization failures and deadlocks (SQLSTATE class 40): the statement did nothing and can run again.
_RETRIES = 5


class PostgresFastPath:
    """``reserve`` and ``settle`` for ``SqlStore`` on PostgreSQL, one round trip each."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: URL, pool_sizes: PoolSizes | None = None) -> PostgresFastPath:
        import asyncpg  # the `postgres` extra: only PostgreSQL deployments need it

        sizes = pool_sizes or PoolSizes()
        options = _fast_path_options(url)

        async def connect() -> Any:
            return await asyncpg.connect(**options)

        pool = ConnectionPool(connect, max_size=sizes.fast_path, idle_seconds=sizes.idle_seconds)
        await pool.open()  # one connection now: a wrong URL or database fails here, not on a request
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def _run(self, method: str, *arguments: Any) -> Any:
        import asyncpg

        for attempt in range(_RETRIES):
            try:
                return await getattr(self._pool, method)(*arguments)
            except asyncpg.exceptions.TransactionRollbackError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    async def reserve(
        self, request: ReservationRequest, ledger_id: str, period: str, now: int, *, attempts: int = 8
    ) -> Reservation | Refusal:
        arguments = (
            request.app_id,
            request.app_user_id,
            period,
            request.wanted,
            request.minimum,
            now,
            ledger_id,
            request.kind,
            request.model,
            now + request.ttl_seconds,
        )
        for _attempt in range(attempts):
            row = await self._run("fetchrow", RESERVE, *arguments)
            try:
                return _reservation(row, request, ledger_id)
            except _Contended:
                continue
        return Refusal.CONTENDED

    async def settle(
        self,
        ledger_id: str,
        state: str,
        cost: int,
        cost_source: str,
        generation_id: str | None,
        reconcile: bool,
        period: str,
        now: int,
        tokens_in: int | None,
        tokens_out: int | None,
    ) -> Settled:
        row = await self._run(
            "fetchrow",
            SETTLE,
            ledger_id,
            state,
            cost,
            cost_source,
            generation_id,
            reconcile,
            now,
            period,
            tokens_in,
            tokens_out,
        )
        return _settled(row)

    async def settle_many(self, rows: list[SettleRow]) -> list[Settled]:
        """Each settle's statement for every row, pipelined in one round trip and committed as one
        transaction (asyncpg's ``fetchmany``): one WAL flush for the group, all of it or nothing.
        Rows are locked in the order given (the proxy gives a group by user, so two processes'
        groups lock counters in one order); a deadlock or serialization failure is retried whole."""
        arguments = [
            (ledger_id, state, cost, source, generation_id, reconcile, now, period, tokens_in, tokens_out)
            for ledger_id, state, cost, source, generation_id, reconcile, period, now, tokens_in, tokens_out in rows
        ]
        found = await self._run("fetchmany", SETTLE, arguments)
        return [_settled(row) for row in found]


def _settled(row: Any) -> Settled:
    if not row["settled"]:
        return Settled(False)
    if row["status"] is None:
        return Settled(True)
    return Settled(True, SpendAfterCharge(row["status"], row["monthly_cap"], row["period"], row["spent"]))


def _reservation(row: Any, request: ReservationRequest, ledger_id: str) -> Reservation | Refusal:
    if row is None:
        return Refusal.NOT_CONNECTED
    if row["status"] != _ACTIVE:
        return Refusal(row["status"])
    amount = row["amount"]
    if amount is None:
        refusal = refusal_for_headroom(row["monthly_cap"], row["spent_now"], row["reserved"], request.minimum)
        if refusal is not None:
            return refusal
        raise _Contended
    return Reservation(ledger_id=ledger_id, amount=amount, connection=_record(row, row["period_now"]))


def _record(row: Any, period: str) -> ConnectionRecord:
    """The user's active row as it was read (before this hold), with this period's spend."""
    return ConnectionRecord(
        id=row["id"],
        app_id=row["app_id"],
        app_user_id=row["app_user_id"],
        status=_ACTIVE_STATE,  # _reservation refused any other before building the record
        authority=row["authority"],
        monthly_cap=row["monthly_cap"],
        period=period,
        spent=row["spent_now"],
        reserved=row["reserved"],
        grant_id=row["grant_id"],
        upstream_url=row["upstream_url"],
        hard_limit=row["hard_limit"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sealed_credential=row["credential"],
    )
