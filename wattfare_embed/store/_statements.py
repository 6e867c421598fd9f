"""The SQL the store runs most, built once, and the mapping of rows to records.

Building SQLAlchemy expressions per call costs more than running them (cache keys, coercion),
measured at about twice the whole reserve + settle pair, so the hot path's statements are
module constants executed with parameters.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from typing import Any

from sqlalchemy import bindparam, case, func, insert, literal_column, select, update

from .base import (
    ConnectionRecord,
    ConnectionState,
    LedgerEntry,
    Refusal,
    Reservation,
    ReservationRequest,
    refusal_for_headroom,
)
from .schema import connections, ledger

_C = connections.c
_L = ledger.c


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def new_ledger_id(prefix: str = "req_") -> str:
    """A ledger id that sorts in the order ids were made: 13 hex digits of microseconds since the
    epoch, then 11 random ones. Ledger pages list rows newest first by ``(created_at, id)``, with
    ``created_at`` in whole seconds, so rows of the same second keep the order they were made in;
    and each new key lands at the right edge of the primary key's B-tree, the page the last insert
    wrote, instead of on a random one. Within a process they are strictly increasing: two made in
    the same microsecond (or after the clock stepped back) take the next microsecond up, rather
    than falling in the order of their random digits; the random digits keep processes apart."""
    global _last_micros
    micros = max(time.time_ns() // 1000, _last_micros + 1)
    _last_micros = micros
    return f"{prefix}{micros:013x}{_digits.getrandbits(44):011x}"


_last_micros = 0  # the microseconds of the last ledger id this process made
# The random digits only keep processes apart (an id is no secret: ledger pages and logs show it),
# so they come from a generator seeded from the OS once, not from a system call per request. It is
# this module's own (a host seeding `random` cannot make two processes' digits the same) and a
# forked child seeds it afresh, as it would otherwise go on with its parent's sequence.
_digits = random.Random()
os.register_at_fork(after_in_child=_digits.seed)


def _spent_in(period: Any) -> Any:
    """This period's spend as a SQL expression: the stored figure, or 0 once the month turned.

    A counter already in a later period (written by a clock ahead of this one) keeps its spend:
    the period never moves back.
    """
    return case((_C.period >= period, _C.spent), else_=0)


def _latest_period(period: Any) -> Any:
    """The counter's period after a write at ``period``: never earlier than it was."""
    return case((_C.period > period, _C.period), else_=period)


def _connection(row: Any, period: str) -> ConnectionRecord:
    """The record as of ``period``, or of the counter's own period if that is later."""
    return ConnectionRecord(
        id=row.id,
        app_id=row.app_id,
        app_user_id=row.app_user_id,
        status=ConnectionState(row.status),
        authority=row.authority,
        monthly_cap=row.monthly_cap,
        period=max(row.period, period),
        spent=row.spent if row.period >= period else 0,
        reserved=row.reserved,
        grant_id=row.grant_id,
        upstream_url=row.upstream_url,
        hard_limit=row.hard_limit,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sealed_credential=row.credential,
    )


def _ledger_entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        app_user_id=row.app_user_id,
        kind=row.kind,
        model=row.model,
        state=row.state,
        reserved=row.reserved,
        cost=row.cost,
        cost_source=row.cost_source,
        generation_id=row.generation_id,
        reconcile=bool(row.reconcile),
        created_at=row.created_at,
        settled_at=row.settled_at,
    )


_USER_ROW_FOR_UPDATE = (
    select(connections)
    .where(_C.app_id == bindparam("b_app_id"), _C.app_user_id == bindparam("b_app_user_id"))
    .with_for_update()
)
# Guarded by the values just read: on a database without row locks a concurrent writer makes
# this match nothing, and the caller retries instead of overspending.
_HOLD = (
    update(connections)
    .where(
        _C.id == bindparam("b_id"),
        _C.reserved == bindparam("b_old_reserved"),
        _C.spent == bindparam("b_old_spent"),
        _C.period == bindparam("b_old_period"),
        # A literal, not a parameter: every parameter is then the caller's (SQLite's positional form).
        _C.status == literal_column(f"'{ConnectionState.ACTIVE.value}'"),
    )
    .values(
        spent=bindparam("b_spent"),
        period=bindparam("b_period"),
        reserved=bindparam("b_reserved"),
        updated_at=bindparam("b_now"),
    )
)
_LEDGER_INSERT = insert(ledger)
_LEDGER_ROW_FOR_UPDATE = (
    select(_L.connection_id, _L.reserved, _L.state, _L.cost).where(_L.id == bindparam("b_id")).with_for_update()
)
# The month the charge lands in, so a later reconcile adjusts the same month: the counter's
# period once charged (run after `_CHARGE`), which a clock behind cannot move back.
_CHARGED_PERIOD = select(_C.period).where(_C.id == bindparam("b_connection_id")).scalar_subquery()
_LEDGER_FINAL = (
    update(ledger)
    .where(_L.id == bindparam("b_id"), _L.state == bindparam("b_old_state"))
    .values(
        state=bindparam("b_state"),
        cost=bindparam("b_cost"),
        cost_source=bindparam("b_cost_source"),
        generation_id=bindparam("b_generation_id"),
        reconcile=bindparam("b_reconcile"),
        settled_at=bindparam("b_now"),
        period=func.coalesce(_CHARGED_PERIOD, bindparam("b_period")),
        tokens_in=bindparam("b_tokens_in"),
        tokens_out=bindparam("b_tokens_out"),
    )
)
_CHARGED_SPEND = _spent_in(bindparam("b_period")) + bindparam("b_delta")
_CHARGE = (
    update(connections)
    .where(_C.id == bindparam("b_id"))
    .values(
        spent=case((_CHARGED_SPEND < 0, 0), else_=_CHARGED_SPEND),
        period=_latest_period(bindparam("b_period")),
        reserved=_C.reserved - bindparam("b_hold"),
        updated_at=bindparam("b_now"),
    )
)


def _nonnegative(expression: Any) -> Any:
    return case((expression < 0, 0), else_=expression)


def hold_for(
    status: str,
    monthly_cap: int,
    row_period: str,
    row_spent: int,
    row_reserved: int,
    request: ReservationRequest,
    period: str,
) -> Refusal | tuple[int, str, int]:
    """How much reserving ``request`` holds from the user's locked counter, the counter's period
    after it and its spend in that period; or why nothing is held.

    The one admission rule for every driver (SQLAlchemy's, SQLite's stdlib one), so it cannot
    differ between them.
    """
    if status != ConnectionState.ACTIVE.value:
        return Refusal(status)
    # A counter a clock ahead already moved on stays in its period: it never moves back.
    current = max(row_period, period)
    spent = row_spent if row_period >= period else 0
    refusal = refusal_for_headroom(monthly_cap, spent, row_reserved, request.minimum)
    if refusal is not None:
        return refusal
    return min(request.wanted, monthly_cap - spent - row_reserved), current, spent


def plan_hold(
    row: Any, request: ReservationRequest, ledger_id: str, period: str, now: int
) -> Refusal | tuple[dict[str, Any], dict[str, Any], Reservation]:
    """What reserving ``request`` against the user's locked row writes: the parameters of the
    guarded hold (``_HOLD``) and of the ledger row, and the reservation they make; or why not.

    ``row`` is the result of ``_USER_ROW_FOR_UPDATE`` (``None``: not connected).
    """
    if row is None:
        return Refusal.NOT_CONNECTED
    held = hold_for(row.status, row.monthly_cap, row.period, row.spent, row.reserved, request, period)
    if isinstance(held, Refusal):
        return held
    amount, current, spent = held
    hold = {
        "b_id": row.id,
        "b_old_reserved": row.reserved,
        "b_old_spent": row.spent,
        "b_old_period": row.period,
        "b_spent": spent,
        "b_period": current,
        "b_reserved": row.reserved + amount,
        "b_now": now,
    }
    entry = {
        "id": ledger_id,
        "connection_id": row.id,
        "app_id": request.app_id,
        "app_user_id": request.app_user_id,
        "kind": request.kind,
        "model": request.model,
        "state": "reserved",
        "reserved": amount,
        "reconcile": False,
        "period": current,
        "created_at": now,
        "expires_at": now + request.ttl_seconds,
    }
    return hold, entry, Reservation(ledger_id=ledger_id, amount=amount, connection=_connection(row, current))


# One settle as both hot paths take it, in their ``settle``'s order: ledger id, final state, cost,
# cost source, generation id, reconcile, period, now, tokens in, tokens out.
SettleRow = tuple[str, str, int, str, str | None, bool, str, int, int | None, int | None]
