"""Consent requests and webhook event ids: the store's part of the consent round trip."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from ._runner import TransactionRunner
from .base import ConsentRequest
from .schema import consent_requests, webhook_events

__all__ = ["ConsentRecords"]


def _consent(row: Any) -> ConsentRequest:
    return ConsentRequest(**{column: getattr(row, column) for column in consent_requests.c.keys()})  # noqa: SIM118


class ConsentRecords(ABC):
    """One-time consent states and applied webhook ids, each operation one transaction."""

    @abstractmethod
    def _run_handle(self) -> TransactionRunner: ...

    async def create_consent_request(self, request: ConsentRequest) -> None:
        values = {column: getattr(request, column) for column in consent_requests.c.keys()}  # noqa: SIM118

        def operation(db: Connection) -> None:
            # Expired requests are cleared as new ones arrive, so the table stays small.
            db.execute(consent_requests.delete().where(consent_requests.c.expires_at < request.created_at - 86400))
            db.execute(insert(consent_requests).values(**values))

        await self._run_handle().run(operation)

    async def consume_consent_request(self, state: str, browser_hash: str, now: int) -> ConsentRequest | None:
        table = consent_requests.c

        def operation(db: Connection) -> ConsentRequest | None:
            result = db.execute(
                update(consent_requests)
                .where(
                    table.state == state,
                    table.used_at.is_(None),
                    table.expires_at > now,
                    table.browser_hash == browser_hash,
                )
                .values(used_at=now)
            )
            if result.rowcount != 1:
                return None
            return _consent(db.execute(select(consent_requests).where(table.state == state)).one())

        return await self._run_handle().run(operation)

    async def find_consent_request(self, state: str) -> ConsentRequest | None:
        def operation(db: Connection) -> ConsentRequest | None:
            row = db.execute(select(consent_requests).where(consent_requests.c.state == state)).first()
            return _consent(row) if row else None

        return await self._run_handle().run(operation)

    async def has_event(self, event_id: str) -> bool:
        def operation(db: Connection) -> bool:
            seen = db.execute(select(webhook_events.c.id).where(webhook_events.c.id == event_id)).first()
            return seen is not None

        return await self._run_handle().run(operation)

    async def remember_event(self, event_id: str, now: int) -> bool:
        def operation(db: Connection) -> bool:
            seen = db.execute(
                select(webhook_events.c.id).where(webhook_events.c.id == event_id).with_for_update()
            ).first()
            if seen:
                return False
            db.execute(insert(webhook_events).values(id=event_id, received_at=now))
            return True

        try:
            return await self._run_handle().run(operation)
        except IntegrityError:
            return False
