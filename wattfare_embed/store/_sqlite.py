"""SQLite's hot path: ``reserve`` and ``settle`` straight on the stdlib driver.

Every metered request reserves before it is forwarded and settles after, so these two are the
store's whole share of the proxy's latency. Through SQLAlchemy's ``Connection`` each statement
pays for its execution context, result wrapping and events (about 0.1 ms a transaction, more
than SQLite's own work); here the same statements (``_statements``, compiled once for SQLite,
``reserve``'s in positional form: ``_sqlite_reserve``) run on the runner's ``sqlite3``
connection, prepared once and kept in the driver's statement cache. The transactions are
unchanged: ``BEGIN IMMEDIATE`` takes the file's write lock before the row is read, so no other
connection or process can change it between the read and the guarded write.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement

from ._sqlite_reserve import Contended, reserve
from ._statements import _CHARGE, _LEDGER_FINAL, _LEDGER_ROW_FOR_UPDATE, SettleRow
from .base import Refusal, Reservation, ReservationRequest, Settled, SpendAfterCharge
from .schema import connections

__all__ = ["SQLiteFastPath"]

_DIALECT = sqlite.dialect(paramstyle="named")


class _Statement:
    """A statement's SQLite text and the values of the parameters it fixes itself (a ``CASE``'s ``0``)."""

    __slots__ = ("fixed", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = compiled.string
        self.fixed = {name: value for name, value in compiled.params.items() if value is not None}

    def run(self, db: sqlite3.Connection, parameters: dict[str, Any]) -> sqlite3.Cursor:
        return db.execute(self.sql, {**self.fixed, **parameters} if self.fixed else parameters)


_LEDGER_ROW = _Statement(_LEDGER_ROW_FOR_UPDATE)
# The counter as the charge left it, for threshold alerts: returned by the write itself.
_CHARGE_SQL = _Statement(
    _CHARGE.returning(connections.c.status, connections.c.monthly_cap, connections.c.period, connections.c.spent)
)
_FINAL = _Statement(_LEDGER_FINAL)

_LedgerRow = namedtuple("_LedgerRow", ["connection_id", "reserved", "state", "cost"])


def settle(
    db: sqlite3.Connection,
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
    """The final ledger row, inside the caller's transaction; ``final`` False when it already was."""
    found = _LEDGER_ROW.run(db, {"b_id": ledger_id}).fetchone()
    if found is None:
        return Settled(False)
    row: Any = _LedgerRow._make(found)
    if row.state not in ("reserved", "expired"):
        return Settled(False)
    if row.state == "reserved":
        hold, already_charged = row.reserved, 0
    else:  # the sweeper charged the whole hold after a stall; apply the difference
        hold, already_charged = 0, row.cost or 0
    charged = _CHARGE_SQL.run(
        db,
        {
            "b_id": row.connection_id,
            "b_period": period,
            "b_delta": cost - already_charged,
            "b_hold": hold,
            "b_now": now,
        },
    ).fetchall()  # all of it: the statement is done before the next one runs
    _FINAL.run(
        db,
        {
            "b_id": ledger_id,
            "b_old_state": row.state,
            "b_state": state,
            "b_cost": cost,
            "b_cost_source": cost_source,
            "b_generation_id": generation_id,
            "b_reconcile": reconcile,
            "b_now": now,
            "b_period": period,
            "b_connection_id": row.connection_id,
            "b_tokens_in": tokens_in,
            "b_tokens_out": tokens_out,
        },
    )
    return Settled(True, SpendAfterCharge(*charged[0]) if charged else None)


def settle_many(db: sqlite3.Connection, rows: list[SettleRow]) -> list[Settled]:
    """Several final ledger rows inside the caller's one transaction, each as ``settle`` writes it:
    one commit for the group. An entry already final settles nothing and stops none of the others."""
    return [settle(db, *row) for row in rows]


class SQLiteFastPath:
    """``reserve`` and ``settle`` for ``SqlStore`` on SQLite, through the runner's raw connection."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    async def reserve(
        self, request: ReservationRequest, ledger_id: str, period: str, now: int
    ) -> Reservation | Refusal:
        for _attempt in range(8):
            try:
                result: Reservation | Refusal = await self._runner.run_raw(reserve, request, ledger_id, period, now)
                return result
            except Contended:
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
        settled: Settled = await self._runner.run_raw(
            settle, ledger_id, state, cost, cost_source, generation_id, reconcile, period, now, tokens_in, tokens_out
        )
        return settled

    async def settle_many(self, rows: list[SettleRow]) -> list[Settled]:
        settled: list[Settled] = await self._runner.run_raw(settle_many, rows)
        return settled
