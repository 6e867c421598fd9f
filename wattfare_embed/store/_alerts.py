"""Threshold alerts in the store: firings recorded once, deliveries kept until done.

A firing's primary key is ``(app_id, app_user_id, period, percent)``: whichever process sees a
user cross a threshold first inserts it, every other one (another worker, the same one after a
restart) meets the key and fires nothing. The firing's deliveries go into the outbox in the
same transaction, so a recorded firing is never left without them.
"""

from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..money import Micros
from ._runner import TransactionRunner
from .schema import alert_firings, alert_outbox

__all__ = ["AlertDelivery", "AlertFiring", "AlertRecords"]

_F = alert_firings.c
_O = alert_outbox.c


@dataclass(frozen=True, slots=True)
class AlertFiring:
    """A threshold a user crossed in a month: ``percent`` of ``monthly_cap``, at ``spent``."""

    event_id: str
    app_id: str
    app_user_id: str
    period: str
    percent: int
    spent: Micros
    monthly_cap: Micros
    fired_at: int


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """One delivery of a firing on one channel, claimed by this process until its lease ends."""

    id: str
    event_id: str
    channel: str
    payload: str
    attempts: int


class AlertRecords(ABC):
    """Alert firings and their outbox, each operation one transaction."""

    @abstractmethod
    def _run_handle(self) -> TransactionRunner: ...

    async def fired_percents(self, app_id: str, app_user_id: str, period: str) -> set[int]:
        def operation(db: Connection) -> set[int]:
            query = select(_F.percent).where(_F.app_id == app_id, _F.app_user_id == app_user_id, _F.period == period)
            return {int(percent) for percent in db.execute(query).scalars()}

        return await self._run_handle().run(operation)

    async def fire_alert(self, firing: AlertFiring, deliveries: Sequence[tuple[str, str]], now: int) -> bool:
        """Record ``firing`` and its ``(channel, payload)`` deliveries, unless that threshold already
        fired for the user this period; True when this call fired it."""

        def operation(db: Connection) -> None:
            db.execute(
                insert(alert_firings).values(
                    app_id=firing.app_id,
                    app_user_id=firing.app_user_id,
                    period=firing.period,
                    percent=firing.percent,
                    event_id=firing.event_id,
                    spent=firing.spent,
                    monthly_cap=firing.monthly_cap,
                    fired_at=firing.fired_at,
                )
            )
            for channel, payload in deliveries:
                db.execute(
                    insert(alert_outbox).values(
                        # Time first, so deliveries due together go out in the order they fired.
                        id=f"ald_{time.time_ns():016x}{secrets.token_hex(6)}",
                        app_id=firing.app_id,
                        event_id=firing.event_id,
                        channel=channel,
                        payload=payload,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )

        try:
            await self._run_handle().run(operation)
        except IntegrityError:
            return False  # another process (or an earlier run) fired it: the key says so
        return True

    async def claim_alert_deliveries(
        self, app_id: str, channels: Sequence[str], now: int, *, lease_seconds: int, limit: int = 50
    ) -> list[AlertDelivery]:
        """Due deliveries on ``channels`` (those the caller can make), each leased to the caller: no
        other process takes it until the lease ends (one that dies holding it leaves it to be retried then)."""
        if not channels:
            return []

        def operation(db: Connection) -> list[AlertDelivery]:
            due = db.execute(
                select(_O.id, _O.event_id, _O.channel, _O.payload, _O.attempts, _O.next_attempt_at)
                .where(
                    _O.app_id == app_id,
                    _O.channel.in_(list(channels)),
                    _O.delivered_at.is_(None),
                    _O.next_attempt_at <= now,
                )
                .order_by(_O.next_attempt_at, _O.id)
                .limit(limit)
            ).all()
            claimed = []
            for row in due:
                # Guarded by the values read: a concurrent claimer changes them, and this one skips it.
                taken = db.execute(
                    update(alert_outbox)
                    .where(_O.id == row.id, _O.next_attempt_at == row.next_attempt_at, _O.delivered_at.is_(None))
                    .values(next_attempt_at=now + lease_seconds, attempts=_O.attempts + 1)
                )
                if taken.rowcount == 1:
                    claimed.append(AlertDelivery(row.id, row.event_id, row.channel, row.payload, row.attempts + 1))
            return claimed

        return await self._run_handle().run(operation)

    async def alert_delivered(self, delivery_id: str, now: int) -> None:
        def operation(db: Connection) -> None:
            db.execute(update(alert_outbox).where(_O.id == delivery_id).values(delivered_at=now, last_error=None))

        await self._run_handle().run(operation)

    async def alert_delivery_failed(self, delivery_id: str, retry_at: int, error: str) -> None:
        def operation(db: Connection) -> None:
            db.execute(
                update(alert_outbox)
                .where(_O.id == delivery_id, _O.delivered_at.is_(None))
                .values(next_attempt_at=retry_at, last_error=error[:255])
            )

        await self._run_handle().run(operation)

    async def pending_alert_deliveries(self, app_id: str) -> int:
        """How many deliveries are not done yet (for health checks and tests)."""

        def operation(db: Connection) -> int:
            query = select(_O.id).where(_O.app_id == app_id, _O.delivered_at.is_(None))
            return len(db.execute(query).all())

        return await self._run_handle().run(operation)
