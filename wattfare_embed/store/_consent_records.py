"""Consent requests and webhook events: the store's part of the consent round trip."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import Connection, and_, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ._grants import revoke_grant_by_authority_id
from ._runner import TransactionRunner
from .base import ConnectionState, ConsentRequest, GrantChange, GrantChangeResult
from .schema import connections, consent_requests, webhook_events

__all__ = ["CONSENT_GRACE_SECONDS", "ConsentRecords"]

_USER_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# Kept this long past expiry (or use), so a late callback is told "expired" or "used", not "unknown".
CONSENT_GRACE_SECONDS = 3600


def _consent(row: Any) -> ConsentRequest:
    return ConsentRequest(**{column: getattr(row, column) for column in consent_requests.c.keys()})  # noqa: SIM118


class ConsentRecords(ABC):
    """One-time consent states and applied webhook ids, each operation one transaction."""

    @abstractmethod
    def _run_handle(self) -> TransactionRunner: ...

    async def create_consent_request(self, request: ConsentRequest, *, keep_open: int = 10) -> None:
        values = {column: getattr(request, column) for column in consent_requests.c.keys()}  # noqa: SIM118
        table = consent_requests.c
        mine = and_(table.app_id == request.app_id, table.app_user_id == request.app_user_id, table.used_at.is_(None))
        # The user's newest unused requests besides this one: all of theirs beyond those goes.
        kept = (
            select(table.state)
            .where(mine, table.state != request.state)
            .order_by(table.created_at.desc(), table.state.desc())
            .limit(keep_open - 1)
        )

        def operation(db: Connection) -> None:
            if db.dialect.name == "postgresql":
                # One user's creations one after another, so concurrent ones cannot each miss the
                # others' rows and keep more than `keep_open` (SQLite's BEGIN IMMEDIATE already does).
                db.execute(_USER_LOCK, {"key": f"wattfare consent {request.app_id}/{request.app_user_id}"})
            db.execute(consent_requests.delete().where(table.expires_at < request.created_at - CONSENT_GRACE_SECONDS))
            db.execute(insert(consent_requests).values(**values))
            # One user opening consent links in a loop keeps at most `keep_open` rows, not one per click.
            db.execute(consent_requests.delete().where(mine, table.state != request.state, table.state.not_in(kept)))

        await self._run_handle().run(operation)

    async def prune_consent_requests(self, now: int) -> int:
        def operation(db: Connection) -> int:
            result = db.execute(
                consent_requests.delete().where(consent_requests.c.expires_at < now - CONSENT_GRACE_SECONDS)
            )
            return int(result.rowcount or 0)

        return await self._run_handle().run(operation)

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

    async def apply_grant_change(self, change: GrantChange, now: int) -> GrantChangeResult:
        table = connections.c

        def operation(db: Connection) -> GrantChangeResult:
            # First, so a second delivery of the id (even a concurrent one) fails here, before it
            # changes anything; a failure further on rolls this back too, leaving the id unseen.
            db.execute(insert(webhook_events).values(app_id=change.app_id, id=change.event_id, received_at=now))
            row = db.execute(
                select(table.id, table.app_user_id, table.status, table.hard_limit)
                .where(table.app_id == change.app_id, table.grant_id == change.grant_id)
                .with_for_update()
            ).first()
            if row is None and change.revoke:
                # Not a connection's: maybe a one-time grant's, which a revoke ends the same way.
                ended = revoke_grant_by_authority_id(db, change.app_id, change.grant_id, now)
                return GrantChangeResult(duplicate=False, applied=ended is not None, connection_id=ended)
            if row is None or row.status != ConnectionState.ACTIVE.value:
                return GrantChangeResult(duplicate=False)  # not (or no longer) this app's grant
            values: dict[str, Any]
            if change.revoke:
                values = {"status": ConnectionState.REVOKED.value, "credential": None}
            elif change.monthly_cap is not None:
                # Never above the upstream key's own limit, even when the event does not name it.
                hard_limit = change.hard_limit if change.hard_limit is not None else row.hard_limit
                limits = [change.monthly_cap, change.max_cap, *([hard_limit] if hard_limit is not None else [])]
                values = {"monthly_cap": min(limits), "hard_limit": hard_limit}
            else:
                return GrantChangeResult(duplicate=False)
            db.execute(update(connections).where(table.id == row.id).values(updated_at=now, **values))
            return GrantChangeResult(duplicate=False, applied=True, connection_id=row.id)

        try:
            return await self._run_handle().run(operation)
        except IntegrityError:
            return GrantChangeResult(duplicate=True)
