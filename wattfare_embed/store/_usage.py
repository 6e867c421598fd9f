"""Reading the ledger back: one user's receipts and a month's totals."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from ..money import Micros
from ._runner import TransactionRunner
from .schema import CHARGED, ledger

__all__ = ["MonthTotal", "Receipt", "UsageRecords"]

_L = ledger.c


@dataclass(frozen=True, slots=True)
class Receipt:
    """One charged request, as the user's receipts show it."""

    id: str
    created_at: int
    settled_at: int | None
    kind: str
    model: str
    cost: Micros
    cost_source: str  # reported | estimated
    tokens_in: int | None
    tokens_out: int | None


@dataclass(frozen=True, slots=True)
class MonthTotal:
    """One user's charges for one model in one month, summed exactly."""

    app_user_id: str
    model: str
    requests: int
    cost: Micros
    estimated_cost: Micros  # the part of ``cost`` not (yet) confirmed by the upstream
    tokens_in: int
    tokens_out: int


class UsageRecords(ABC):
    """The ledger as receipts and reports, each operation one transaction."""

    @abstractmethod
    def _run_handle(self) -> TransactionRunner: ...

    async def receipts(
        self, app_id: str, app_user_id: str, period: str, *, before: tuple[int, str] | None, limit: int
    ) -> list[Receipt]:
        """One user's charged requests in ``period``, newest first, strictly after the cursor
        ``before`` (the ``(created_at, id)`` of the last row of the previous page)."""

        def operation(db: Connection) -> list[Receipt]:
            query = select(ledger).where(
                _L.app_id == app_id,
                _L.app_user_id == app_user_id,
                _L.period == period,
                CHARGED,
            )
            if before is not None:
                created_at, ledger_id = before
                query = query.where(
                    or_(_L.created_at < created_at, and_(_L.created_at == created_at, _L.id < ledger_id))
                )
            rows = db.execute(query.order_by(_L.created_at.desc(), _L.id.desc()).limit(limit)).all()
            return [_receipt(row) for row in rows]

        return await self._run_handle().run(operation)

    async def month_totals(self, app_id: str, period: str) -> list[MonthTotal]:
        """Every user's charges per model in ``period`` (the month each charge landed in)."""
        estimated = func.sum(func.coalesce(_L.cost, 0)).filter(_L.cost_source != "reported")

        def operation(db: Connection) -> list[MonthTotal]:
            query = (
                select(
                    _L.app_user_id,
                    _L.model,
                    func.count().label("requests"),
                    func.sum(func.coalesce(_L.cost, 0)).label("cost"),
                    estimated.label("estimated"),
                    func.sum(func.coalesce(_L.tokens_in, 0)).label("tokens_in"),
                    func.sum(func.coalesce(_L.tokens_out, 0)).label("tokens_out"),
                )
                .where(_L.app_id == app_id, _L.period == period, CHARGED)
                .group_by(_L.app_user_id, _L.model)
                .order_by(_L.app_user_id, _L.model)
            )
            return [_total(row) for row in db.execute(query).all()]

        return await self._run_handle().run(operation)


def _receipt(row: Any) -> Receipt:
    return Receipt(
        id=row.id,
        created_at=row.created_at,
        settled_at=row.settled_at,
        kind=row.kind,
        model=row.model,
        cost=int(row.cost or 0),
        cost_source=row.cost_source or "estimated",
        tokens_in=row.tokens_in,
        tokens_out=row.tokens_out,
    )


def _total(row: Any) -> MonthTotal:
    # SUM comes back as Decimal on PostgreSQL (bigint sums are numeric): exact, made int here.
    return MonthTotal(
        app_user_id=row.app_user_id,
        model=row.model,
        requests=int(row.requests),
        cost=int(row.cost or 0),
        estimated_cost=int(row.estimated or 0),
        tokens_in=int(row.tokens_in or 0),
        tokens_out=int(row.tokens_out or 0),
    )
