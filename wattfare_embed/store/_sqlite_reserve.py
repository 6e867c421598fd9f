"""SQLite's ``reserve`` on the stdlib driver, its statements in positional form.

The reservation is most of what a metered request does before it is forwarded. Its three
statements take their values as tuples in the order the SQL names them (no parameter dicts to
build and look up), the user's row is read as a plain tuple, and the record is built from it
directly. The order each statement expects is checked when this module is imported, so a change
to the statements or the tables cannot bind a value to the wrong column.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import bindparam, false, insert, literal_column
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from ._statements import _HOLD, _USER_ROW_FOR_UPDATE, hold_for
from .base import ConnectionRecord, ConnectionState, Refusal, Reservation, ReservationRequest
from .schema import connections, ledger

__all__ = ["Contended", "reserve"]

_QMARK = sqlite.dialect(paramstyle="qmark")
_ACTIVE = ConnectionState.ACTIVE  # an enum member read from its class costs a lookup each time


class Contended(Exception):
    """The row changed between read and write; try the reservation again."""


def _positional(statement: ClauseElement, names: tuple[str, ...]) -> str:
    """``statement``'s SQLite text with ``?`` parameters, which must be ``names`` in this order."""
    compiled = statement.compile(dialect=_QMARK)
    assert isinstance(compiled, SQLCompiler)
    if tuple(compiled.positiontup or ()) != names:
        raise AssertionError(f"parameters {compiled.positiontup} are not in the order {names}")
    return compiled.string


# The user's row, unpacked by position in ``reserve``: the table's columns in their order.
_ROW_COLUMNS = (
    "id",
    "app_id",
    "app_user_id",
    "status",
    "authority",
    "monthly_cap",
    "period",
    "spent",
    "reserved",
    "credential",
    "grant_id",
    "upstream_url",
    "hard_limit",
    "created_at",
    "updated_at",
)
if tuple(column.key for column in connections.c) != _ROW_COLUMNS:
    raise AssertionError("wattfare_connections' columns changed: update _ROW_COLUMNS and reserve()")

_USER_ROW = _positional(_USER_ROW_FOR_UPDATE, ("b_app_id", "b_app_user_id"))
_HOLD_SQL = _positional(
    _HOLD, ("b_period", "b_spent", "b_reserved", "b_now", "b_id", "b_old_reserved", "b_old_spent", "b_old_period")
)
_ENTRY = (
    "id",
    "connection_id",
    "app_id",
    "app_user_id",
    "kind",
    "model",
    "reserved",
    "period",
    "created_at",
    "expires_at",
)
_INSERT = _positional(
    insert(ledger).values(
        {
            **{name: bindparam(f"b_{name}") for name in _ENTRY},
            "state": literal_column("'reserved'"),
            "reconcile": false(),
        }
    ),
    tuple(f"b_{name}" for name in _ENTRY),
)


def reserve(
    db: sqlite3.Connection, request: ReservationRequest, ledger_id: str, period: str, now: int
) -> Reservation | Refusal:
    """One reservation, inside the caller's ``BEGIN IMMEDIATE`` transaction."""
    found = db.execute(_USER_ROW, (request.app_id, request.app_user_id)).fetchone()
    if found is None:
        return Refusal.NOT_CONNECTED
    (
        connection_id,
        app_id,
        app_user_id,
        status,
        authority,
        monthly_cap,
        row_period,
        row_spent,
        row_reserved,
        credential,
        grant_id,
        upstream_url,
        hard_limit,
        created_at,
        updated_at,
    ) = found
    held = hold_for(status, monthly_cap, row_period, row_spent, row_reserved, request, period)
    if isinstance(held, Refusal):
        return held
    amount, current, spent = held
    hold: tuple[Any, ...] = (
        current,
        spent,
        row_reserved + amount,
        now,
        connection_id,
        row_reserved,
        row_spent,
        row_period,
    )
    if db.execute(_HOLD_SQL, hold).rowcount != 1:
        raise Contended
    db.execute(
        _INSERT,
        (
            ledger_id,
            connection_id,
            request.app_id,
            request.app_user_id,
            request.kind,
            request.model,
            amount,
            current,
            now,
            now + request.ttl_seconds,
        ),
    )
    connection = ConnectionRecord(
        id=connection_id,
        app_id=app_id,
        app_user_id=app_user_id,
        status=_ACTIVE,  # hold_for holds nothing from any other
        authority=authority,
        monthly_cap=monthly_cap,
        period=current,
        spent=spent,
        reserved=row_reserved,
        grant_id=grant_id,
        upstream_url=upstream_url,
        hard_limit=hard_limit,
        created_at=created_at,
        updated_at=updated_at,
        sealed_credential=credential,
    )
    return Reservation(ledger_id=ledger_id, amount=amount, connection=connection)
