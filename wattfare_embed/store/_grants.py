"""One-time grants: the store's part (admission, settlement, revocation), each one transaction.

A grant's ledger rows live in ``wattfare_ledger`` with the grant's id as their ``connection_id``
and ids prefixed ``grq_``, so ``settle``, ``reconcile`` and ``sweep_expired`` tell them apart by
the id alone and finish them here, leaving the connections' hot path as it was.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from ..periods import period_of
from ._runner import TransactionRunner
from ._statements import _L, _new_id, new_ledger_id
from .base import (
    ConnectionRecord,
    ConnectionState,
    GrantRecord,
    GrantRefusal,
    NewGrant,
    Reservation,
    ReservationRequest,
)
from .schema import HAS_CREDENTIAL, grants, ledger

__all__ = ["GRANT_ID_PREFIX", "GRANT_LEDGER_PREFIX", "GrantRecords", "connection_view", "grant_record"]

GRANT_ID_PREFIX = "gnt_"
GRANT_LEDGER_PREFIX = "grq_"
_G = grants.c

# Guarded by the figures just read (as the connections' hold is): on a database without row
# locks a concurrent admission makes this match nothing, and the caller tries again.
_TAKE = (
    update(grants)
    .where(
        _G.id == bindparam("b_id"),
        _G.requests_used == bindparam("b_old_used"),
        _G.reserved == bindparam("b_old_reserved"),
        _G.spent == bindparam("b_old_spent"),
        _G.revoked.is_(False),
    )
    .values(
        requests_used=bindparam("b_used"),
        reserved=bindparam("b_reserved"),
        updated_at=bindparam("b_now"),
    )
)


def grant_record(row: Any) -> GrantRecord:
    return GrantRecord(
        id=row.id,
        app_id=row.app_id,
        authority=row.authority,
        requests_allowed=row.requests_allowed,
        requests_used=row.requests_used,
        max_cost=row.max_cost,
        spent=row.spent,
        reserved=row.reserved,
        revoked=bool(row.revoked),
        created_at=row.created_at,
        expires_at=row.expires_at,
        authority_grant_id=row.authority_grant_id,
        upstream_url=row.upstream_url,
        sealed_credential=row.credential,
    )


def connection_view(grant: GrantRecord, period: str) -> ConnectionRecord:
    """The grant as the proxy's forwarding sees a funding source: its id, credential (sealed for
    ``app_id/grant_id``) and upstream. The cap is the grant's dollar cap."""
    return ConnectionRecord(
        id=grant.id,
        app_id=grant.app_id,
        app_user_id=grant.id,
        status=ConnectionState.REVOKED if grant.revoked else ConnectionState.ACTIVE,
        authority=grant.authority,
        monthly_cap=grant.max_cost,
        period=period,
        spent=grant.spent,
        reserved=grant.reserved,
        grant_id=grant.authority_grant_id,
        upstream_url=grant.upstream_url,
        hard_limit=grant.max_cost,
        created_at=grant.created_at,
        updated_at=grant.created_at,
        sealed_credential=grant.sealed_credential,
    )


def _refusal(row: Any, now: int, minimum: int) -> GrantRefusal | None:
    if row.revoked:
        return GrantRefusal.REVOKED
    if row.expires_at <= now:
        return GrantRefusal.EXPIRED
    if row.requests_used >= row.requests_allowed:
        return GrantRefusal.USED_UP
    headroom = row.max_cost - row.spent - row.reserved
    if headroom > 0 and headroom >= minimum:
        return None
    if row.reserved > 0 and row.max_cost - row.spent >= max(minimum, 1):
        return GrantRefusal.HELD_IN_FLIGHT
    return GrantRefusal.OVER_CAP


class GrantRecords(ABC):
    """Grant rows and their ledger rows."""

    @abstractmethod
    def _run_handle(self) -> TransactionRunner: ...

    async def create_grant(self, grant: NewGrant, now: int) -> GrantRecord:
        def operation(db: Connection) -> GrantRecord:
            db.execute(
                insert(grants).values(
                    id=grant.id,
                    app_id=grant.app_id,
                    token_hash=grant.token_hash,
                    authority=grant.authority,
                    requests_allowed=grant.requests_allowed,
                    requests_used=0,
                    max_cost=grant.max_cost,
                    spent=0,
                    reserved=0,
                    credential=grant.sealed_credential,
                    authority_grant_id=grant.authority_grant_id,
                    upstream_url=grant.upstream_url,
                    revoked=False,
                    created_at=now,
                    expires_at=grant.expires_at,
                    updated_at=now,
                )
            )
            return grant_record(db.execute(select(grants).where(_G.id == grant.id)).one())

        return await self._run_handle().run(operation)

    async def find_grant(self, app_id: str, token_hash: str) -> GrantRecord | None:
        def operation(db: Connection) -> GrantRecord | None:
            row = db.execute(select(grants).where(_G.token_hash == token_hash, _G.app_id == app_id)).first()
            return grant_record(row) if row else None

        return await self._run_handle().run(operation)

    async def get_grant(self, grant_id: str) -> GrantRecord | None:
        def operation(db: Connection) -> GrantRecord | None:
            row = db.execute(select(grants).where(_G.id == grant_id)).first()
            return grant_record(row) if row else None

        return await self._run_handle().run(operation)

    async def reserve_grant(
        self, app_id: str, token_hash: str, request: ReservationRequest, now: int
    ) -> tuple[Reservation, GrantRecord] | GrantRefusal:
        period = period_of(now)
        ledger_id = new_ledger_id(GRANT_LEDGER_PREFIX)

        def operation(db: Connection) -> tuple[Reservation, GrantRecord] | GrantRefusal:
            row = db.execute(select(grants).where(_G.token_hash == token_hash).with_for_update()).first()
            if row is None or row.app_id != app_id:
                return GrantRefusal.UNKNOWN
            refusal = _refusal(row, now, request.minimum)
            if refusal is not None:
                return refusal
            amount = min(request.wanted, row.max_cost - row.spent - row.reserved)
            taken = db.execute(
                _TAKE,
                {
                    "b_id": row.id,
                    "b_old_used": row.requests_used,
                    "b_old_reserved": row.reserved,
                    "b_old_spent": row.spent,
                    "b_used": row.requests_used + 1,
                    "b_reserved": row.reserved + amount,
                    "b_now": now,
                },
            )
            if taken.rowcount != 1:
                raise _Contended
            db.execute(
                insert(ledger).values(
                    id=ledger_id,
                    connection_id=row.id,
                    app_id=app_id,
                    app_user_id=row.id,
                    kind=request.kind,
                    model=request.model,
                    state="reserved",
                    reserved=amount,
                    reconcile=False,
                    period=period,
                    created_at=now,
                    expires_at=now + request.ttl_seconds,
                )
            )
            grant = grant_record(row)
            return Reservation(ledger_id, amount, connection_view(grant, period)), grant

        for _attempt in range(8):
            try:
                return await self._run_handle().run(operation)
            except _Contended:
                continue
        return GrantRefusal.CONTENDED

    async def _settle_grant_row(
        self,
        ledger_id: str,
        state: str,
        cost: int,
        cost_source: str,
        now: int,
        generation_id: str | None,
        reconcile: bool,
        tokens_in: int | None,
        tokens_out: int | None,
    ) -> bool:
        def operation(db: Connection) -> bool:
            row = db.execute(
                select(_L.connection_id, _L.reserved, _L.state, _L.cost).where(_L.id == ledger_id).with_for_update()
            ).first()
            if row is None or row.state not in ("reserved", "expired"):
                return False
            if row.state == "reserved":
                hold, already_charged = row.reserved, 0
            else:  # the sweeper charged the whole hold after a stall; apply the difference
                hold, already_charged = 0, row.cost or 0
            # A request released unsent (nothing charged) gives its request back to the grant.
            returned = 1 if state == "released" and row.state == "reserved" else 0
            db.execute(
                update(grants)
                .where(_G.id == row.connection_id)
                .values(
                    spent=_G.spent + (cost - already_charged),
                    reserved=_G.reserved - hold,
                    requests_used=_G.requests_used - returned,
                    updated_at=now,
                )
            )
            db.execute(
                update(ledger)
                .where(_L.id == ledger_id, _L.state == row.state)
                .values(
                    state=state,
                    cost=cost,
                    cost_source=cost_source,
                    generation_id=generation_id,
                    reconcile=reconcile,
                    settled_at=now,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                )
            )
            return True

        return await self._run_handle().run(operation)

    async def _reconcile_grant_row(self, ledger_id: str, actual: int, now: int) -> bool:
        def operation(db: Connection) -> bool:
            row = db.execute(
                select(_L.connection_id, _L.cost)
                .where(_L.id == ledger_id, _L.reconcile.is_(True), _L.state == "settled")
                .with_for_update()
            ).first()
            if row is None:
                return False
            db.execute(
                update(ledger).where(_L.id == ledger_id).values(cost=actual, cost_source="reported", reconcile=False)
            )
            db.execute(
                update(grants)
                .where(_G.id == row.connection_id)
                .values(spent=_G.spent + (actual - (row.cost or 0)), updated_at=now)
            )
            return True

        return await self._run_handle().run(operation)

    async def forget_ended_grant_credentials(self, app_id: str, ended_before: int, now: int) -> int:
        """Drop the sealed funding credential of every grant of ``app_id`` that ended (expired)
        before ``ended_before``; returns how many. The grants themselves stay, for their status and
        their rows' receipts."""

        def operation(db: Connection) -> int:
            # The index's own condition, so that this reads it (``schema.HAS_CREDENTIAL``).
            ended = (_G.app_id == app_id, HAS_CREDENTIAL, _G.expires_at < ended_before)
            result = db.execute(update(grants).where(*ended).values(credential=None, updated_at=now))
            return int(result.rowcount or 0)

        return await self._run_handle().run(operation)

    async def revoke_grant(self, app_id: str, grant_id: str, now: int) -> GrantRecord | None:
        def operation(db: Connection) -> GrantRecord | None:
            where = (_G.id == grant_id) & (_G.app_id == app_id)
            result = db.execute(update(grants).where(where).values(revoked=True, credential=None, updated_at=now))
            if result.rowcount == 0:
                return None
            return grant_record(db.execute(select(grants).where(where)).one())

        return await self._run_handle().run(operation)


def sweep_grant_row(db: Connection, grant_id: str, reserved: int, now: int) -> None:
    """A grant request whose process died: the whole hold is charged (the upstream may have billed it)."""
    db.execute(
        update(grants)
        .where(_G.id == grant_id)
        .values(spent=_G.spent + reserved, reserved=_G.reserved - reserved, updated_at=now)
    )


def revoke_grant_by_authority_id(db: Connection, app_id: str, authority_grant_id: str, now: int) -> str | None:
    """Revoke the app's grant the consent domain knows as ``authority_grant_id``; its id, or None."""
    row = db.execute(
        select(_G.id, _G.revoked)
        .where(_G.app_id == app_id, _G.authority_grant_id == authority_grant_id)
        .with_for_update()
    ).first()
    if row is None or row.revoked:
        return None
    db.execute(update(grants).where(_G.id == row.id).values(revoked=True, credential=None, updated_at=now))
    grant_id: str = row.id
    return grant_id


class _Contended(Exception):
    """The grant changed between read and write; try again."""


def new_grant_id() -> str:
    return _new_id(GRANT_ID_PREFIX)
