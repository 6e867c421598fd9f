"""``SqlStore``: the ``Store`` protocol on any SQLAlchemy database.

Atomicity: every operation is one transaction. Reservations read the user's
row under a write lock (``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE``
elsewhere) and then update it with a guard on the values read, so concurrent
requests can never jointly pass a cap even on a database without row locks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ..periods import period_of
from ._alerts import AlertRecords
from ._consent_records import ConsentRecords
from ._grants import GRANT_ID_PREFIX, GRANT_LEDGER_PREFIX, GrantRecords, sweep_grant_row
from ._ledger_notes import LedgerNotes
from ._postgres import PostgresFastPath, asyncpg_url
from ._revocations import RevocationListener, notify_connection_ended
from ._runner import SQLiteRunner, TransactionRunner, runner_for_url
from ._sqlite import SQLiteFastPath
from ._statements import (
    _C,
    _CHARGE,
    _HOLD,
    _L,
    _LEDGER_FINAL,
    _LEDGER_INSERT,
    _LEDGER_ROW_FOR_UPDATE,
    _USER_ROW_FOR_UPDATE,
    SettleRow,
    _connection,
    _latest_period,
    _ledger_entry,
    _new_id,
    _nonnegative,
    _spent_in,
    new_ledger_id,
    plan_hold,
)
from ._usage import UsageRecords
from .base import (
    ConnectionRecord,
    ConnectionState,
    FinalCharge,
    LedgerEntry,
    NewConnection,
    Refusal,
    Reservation,
    ReservationRequest,
    Settled,
    settle_charge,
)
from .pools import PoolSizes
from .revisions import migrations
from .schema import OPEN_HOLD, connections, ledger

__all__ = ["SqlStore"]


class SqlStore(ConsentRecords, GrantRecords, UsageRecords, AlertRecords, LedgerNotes):
    """Cap and usage state in the app's own SQL database.

    ``SqlStore("sqlite+aiosqlite:///wattfare.db")`` or
    ``SqlStore("postgresql+asyncpg://user@host/db")``. ``open()`` migrates the tables to this
    release's revision (as ``wattfare migrate`` does); with ``auto_migrate=False`` it only checks
    that they are there and raises ``ConfigurationError`` if not. ``pool_sizes`` bounds the
    PostgreSQL connections it opens.
    """

    def __init__(self, database_url: str, *, auto_migrate: bool = True, pool_sizes: PoolSizes | None = None) -> None:
        self.database_url = database_url
        self.auto_migrate = auto_migrate
        self.pool_sizes = pool_sizes or PoolSizes()
        self._runner: TransactionRunner | None = None
        # PostgreSQL through asyncpg: reserve and settle as one statement each (``_postgres``).
        self._postgres: PostgresFastPath | None = None
        # SQLite: the same two on the stdlib driver, without SQLAlchemy's per-statement work (``_sqlite``).
        self._sqlite: SQLiteFastPath | None = None
        self._on_ended: list[Callable[[str], None]] = []
        self._revocations: RevocationListener | None = None

    @property
    def dialect_name(self) -> str:
        return self._run_handle().dialect_name

    @property
    def reserves_inline(self) -> bool:
        """Whether ``reserve`` runs its transaction on the caller's stack and, if it has to wait (the
        file's write lock held by another process), waits on a thread with no deadline of its own
        entered first: SQLite. The proxy then starts it on the request's own task (``_eager``).
        PostgreSQL's reserve may first open a connection, under asyncpg's connect deadline."""
        return isinstance(self._runner, SQLiteRunner)

    def _run_handle(self) -> TransactionRunner:
        if self._runner is None:
            raise RuntimeError("the store is not open; call `await store.open()` first")
        return self._runner

    async def open(self) -> None:
        if self._runner is not None:
            return
        self._runner = runner_for_url(self.database_url, self.pool_sizes)
        try:
            await migrations.prepare(self._runner, automatic=self.auto_migrate)
            if isinstance(self._runner, SQLiteRunner):
                self._sqlite = SQLiteFastPath(self._runner)
            url = asyncpg_url(self.database_url)
            if url is not None:
                self._postgres = await PostgresFastPath.open(url, self.pool_sizes)
                if self._on_ended:
                    self._revocations = RevocationListener(url, self._connection_ended)
                    await self._revocations.start()
        except BaseException:
            # Not open after all: the next start-up migrates and checks the schema again.
            runner, self._runner = self._runner, None
            await runner.dispose()
            raise

    async def close(self) -> None:
        if self._revocations is not None:
            revocations, self._revocations = self._revocations, None
            await revocations.stop()
        if self._postgres is not None:
            postgres, self._postgres = self._postgres, None
            await postgres.close()
        self._sqlite = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.dispose()

    async def ping(self) -> None:
        def operation(db: Connection) -> None:
            db.execute(text("SELECT 1"))

        await self._run_handle().run(operation)
        if self._postgres is not None:
            await self._postgres.ping()

    # -- revocations across processes ---------------------------------------------------------

    def listen_for_revocations(self, on_ended: Callable[[str], None]) -> None:
        """On PostgreSQL, a LISTEN connection (opened with the store) calls ``on_ended`` with the id
        of each connection any process ends; ``set_status`` notifies in its own transaction."""
        self._on_ended.append(on_ended)

    @property
    def hears_revocations(self) -> bool:
        return self._revocations is not None and self._revocations.listening

    def _connection_ended(self, connection_id: str) -> None:
        for on_ended in self._on_ended:
            on_ended(connection_id)

    # -- connections ------------------------------------------------------------------------

    async def get_connection(self, app_id: str, app_user_id: str, now: int) -> ConnectionRecord | None:
        def operation(db: Connection) -> ConnectionRecord | None:
            row = db.execute(select(connections).where(_C.app_id == app_id, _C.app_user_id == app_user_id)).first()
            return _connection(row, period_of(now)) if row else None

        return await self._run_handle().run(operation)

    async def find_connection_by_grant(self, grant_id: str, now: int) -> ConnectionRecord | None:
        def operation(db: Connection) -> ConnectionRecord | None:
            row = db.execute(select(connections).where(_C.grant_id == grant_id)).first()
            return _connection(row, period_of(now)) if row else None

        return await self._run_handle().run(operation)

    async def save_connection(self, new: NewConnection, now: int) -> ConnectionRecord:
        period = period_of(now)
        values = {
            "status": ConnectionState.ACTIVE.value,
            "authority": new.authority,
            "monthly_cap": new.monthly_cap,
            "credential": new.sealed_credential,
            "grant_id": new.grant_id,
            "upstream_url": new.upstream_url,
            "hard_limit": new.hard_limit,
            "updated_at": now,
        }

        def operation(db: Connection) -> ConnectionRecord:
            where = and_(_C.app_id == new.app_id, _C.app_user_id == new.app_user_id)
            # A reconnect keeps this month's spend: connecting again must not reset the cap.
            updated = db.execute(
                update(connections)
                .where(where)
                .values(spent=_spent_in(period), period=_latest_period(period), **values)
            )
            if updated.rowcount == 0:
                db.execute(
                    insert(connections).values(
                        id=_new_id("con_"),
                        app_id=new.app_id,
                        app_user_id=new.app_user_id,
                        period=period,
                        spent=0,
                        reserved=0,
                        created_at=now,
                        **values,
                    )
                )
            row = db.execute(select(connections).where(where)).one()
            return _connection(row, period)

        try:
            return await self._run_handle().run(operation)
        except IntegrityError:
            # Two callbacks for one user raced to insert; the loser updates the winner's row.
            return await self._run_handle().run(operation)

    async def lower_cap(self, app_id: str, app_user_id: str, monthly_cap: int, now: int) -> ConnectionRecord | None:
        return await self._update_connection(
            app_id, app_user_id, now, {"monthly_cap": monthly_cap}, only_if=_C.monthly_cap >= monthly_cap
        )

    async def set_cap(self, app_id: str, app_user_id: str, monthly_cap: int, now: int) -> ConnectionRecord | None:
        return await self._update_connection(app_id, app_user_id, now, {"monthly_cap": monthly_cap})

    async def set_status(
        self, app_id: str, app_user_id: str, status: ConnectionState, now: int, *, drop_credential: bool
    ) -> ConnectionRecord | None:
        values: dict[str, Any] = {"status": status.value}
        if drop_credential:
            values["credential"] = None
        ended = status is not ConnectionState.ACTIVE
        return await self._update_connection(app_id, app_user_id, now, values, active_only=False, notify=ended)

    async def _update_connection(
        self,
        app_id: str,
        app_user_id: str,
        now: int,
        values: dict[str, Any],
        *,
        only_if: Any = None,
        active_only: bool = True,
        notify: bool = False,
    ) -> ConnectionRecord | None:
        period = period_of(now)

        def operation(db: Connection) -> ConnectionRecord | None:
            where = and_(_C.app_id == app_id, _C.app_user_id == app_user_id)
            guard = where
            if active_only:
                guard = and_(guard, _C.status == ConnectionState.ACTIVE.value)
            if only_if is not None:
                guard = and_(guard, only_if)
            result = db.execute(update(connections).where(guard).values(updated_at=now, **values))
            if result.rowcount == 0:
                return None
            record = _connection(db.execute(select(connections).where(where)).one(), period)
            if notify:
                # Delivered on commit, never on rollback: other processes stop this connection's calls.
                notify_connection_ended(db, record.id)
            return record

        return await self._run_handle().run(operation)

    # -- metering ---------------------------------------------------------------------------

    async def reserve(self, request: ReservationRequest, now: int) -> Reservation | Refusal:
        period = period_of(now)
        ledger_id = request.ledger_id or new_ledger_id()
        if self._postgres is not None:
            return await self._postgres.reserve(request, ledger_id, period, now)
        if self._sqlite is not None:
            return await self._sqlite.reserve(request, ledger_id, period, now)

        def operation(db: Connection) -> Reservation | Refusal:
            row = db.execute(
                _USER_ROW_FOR_UPDATE, {"b_app_id": request.app_id, "b_app_user_id": request.app_user_id}
            ).first()
            plan = plan_hold(row, request, ledger_id, period, now)
            if isinstance(plan, Refusal):
                return plan
            hold, entry, reservation = plan
            if db.execute(_HOLD, hold).rowcount != 1:
                raise _Contended
            db.execute(_LEDGER_INSERT, entry)
            return reservation

        for _attempt in range(8):
            try:
                return await self._run_handle().run(operation)
            except _Contended:
                continue
        return Refusal.CONTENDED

    async def settle(
        self,
        ledger_id: str,
        cost: int,
        cost_source: str,
        now: int,
        *,
        generation_id: str | None = None,
        reconcile: bool = False,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
    ) -> bool:
        settled = await self.settle_reading_spend(
            ledger_id,
            cost,
            cost_source,
            now,
            generation_id=generation_id,
            reconcile=reconcile,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
        return settled.final

    async def settle_reading_spend(
        self,
        ledger_id: str,
        cost: int,
        cost_source: str,
        now: int,
        *,
        generation_id: str | None = None,
        reconcile: bool = False,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
    ) -> Settled:
        period = period_of(now)
        state = "released" if cost_source == "none" else "settled"
        if ledger_id.startswith(GRANT_LEDGER_PREFIX):
            return Settled(
                await self._settle_grant_row(
                    ledger_id, state, cost, cost_source, now, generation_id, reconcile, tokens_in, tokens_out
                )
            )
        if self._postgres is not None:
            return await self._postgres.settle(
                ledger_id, state, cost, cost_source, generation_id, reconcile, period, now, tokens_in, tokens_out
            )
        if self._sqlite is not None:
            return await self._sqlite.settle(
                ledger_id, state, cost, cost_source, generation_id, reconcile, period, now, tokens_in, tokens_out
            )

        def operation(db: Connection) -> bool:
            row = db.execute(_LEDGER_ROW_FOR_UPDATE, {"b_id": ledger_id}).first()
            if row is None or row.state not in ("reserved", "expired"):
                return False
            if row.state == "reserved":
                hold, already_charged = row.reserved, 0
            else:  # the sweeper charged the whole hold after a stall; apply the difference
                hold, already_charged = 0, row.cost or 0
            db.execute(
                _CHARGE,
                {
                    "b_id": row.connection_id,
                    "b_period": period,
                    "b_delta": cost - already_charged,
                    "b_hold": hold,
                    "b_now": now,
                },
            )
            db.execute(
                _LEDGER_FINAL,
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
            return True

        return Settled(await self._run_handle().run(operation))

    async def settle_many(self, charges: Sequence[FinalCharge]) -> list[Settled]:
        """Each charge settled as ``settle_reading_spend`` would, the ledger's all in one transaction
        on the SQLite and PostgreSQL hot paths (one commit, one WAL write for the group); a grant's
        charge, or any charge on another database, on its own."""
        batched: list[tuple[int, SettleRow]] = []
        results = [Settled(False)] * len(charges)
        fast = self._sqlite or self._postgres
        for index, charge in enumerate(charges):
            if fast is None or charge.ledger_id.startswith(GRANT_LEDGER_PREFIX):
                results[index] = await settle_charge(self, charge)
                continue
            state = "released" if charge.cost_source == "none" else "settled"
            batched.append(
                (
                    index,
                    (
                        charge.ledger_id,
                        state,
                        charge.cost,
                        charge.cost_source,
                        charge.generation_id,
                        charge.reconcile,
                        period_of(charge.at),
                        charge.at,
                        charge.tokens_in,
                        charge.tokens_out,
                    ),
                )
            )
        if fast is not None and batched:
            settled_rows = await fast.settle_many([row for _index, row in batched])
            for (index, _row), settled in zip(batched, settled_rows, strict=True):
                results[index] = settled
        return results

    async def reconcile(self, ledger_id: str, actual: int, now: int) -> bool:
        if ledger_id.startswith(GRANT_LEDGER_PREFIX):
            return await self._reconcile_grant_row(ledger_id, actual, now)

        def operation(db: Connection) -> bool:
            row = db.execute(
                select(_L.connection_id, _L.cost)
                .where(_L.id == ledger_id, _L.reconcile.is_(True), _L.state.in_(("settled", "expired")))
                .with_for_update()
            ).first()
            if row is None:
                return False
            db.execute(
                update(ledger).where(_L.id == ledger_id).values(cost=actual, cost_source="reported", reconcile=False)
            )
            # The difference lands on the counter as it stands: still the month of the charge, or,
            # once that month's counter has rolled over, the current one. Never nowhere, never back.
            db.execute(
                update(connections)
                .where(_C.id == row.connection_id)
                .values(spent=_nonnegative(_C.spent + (actual - (row.cost or 0))), updated_at=now)
            )
            return True

        return await self._run_handle().run(operation)

    async def give_up_reconciliation(self, ledger_id: str) -> None:
        def operation(db: Connection) -> None:
            db.execute(update(ledger).where(_L.id == ledger_id).values(reconcile=False))

        await self._run_handle().run(operation)

    async def pending_reconciliations(self, limit: int, *, app_id: str | None = None) -> list[LedgerEntry]:
        def operation(db: Connection) -> list[LedgerEntry]:
            # `= true`, not `IS 1`: an equality the (reconcile, created_at) index serves in order.
            query = select(ledger).where(_L.reconcile == True)  # noqa: E712
            if app_id is not None:
                query = query.where(_L.app_id == app_id)
            rows = db.execute(query.order_by(_L.created_at).limit(limit)).all()
            return [_ledger_entry(row) for row in rows]

        return await self._run_handle().run(operation)

    async def sweep_expired(self, now: int, *, app_id: str | None = None) -> int:
        period = period_of(now)

        def operation(db: Connection) -> int:
            # The open-hold condition as the partial index states it, so that this reads it.
            query = select(_L.id, _L.connection_id, _L.reserved, _L.generation_id).where(OPEN_HOLD, _L.expires_at < now)
            if app_id is not None:
                query = query.where(_L.app_id == app_id)
            rows = db.execute(query.with_for_update()).all()
            for row in rows:
                if row.connection_id.startswith(GRANT_ID_PREFIX):
                    sweep_grant_row(db, row.connection_id, row.reserved, now)
                else:
                    db.execute(
                        update(connections)
                        .where(_C.id == row.connection_id)
                        .values(
                            spent=_spent_in(period) + row.reserved,
                            period=_latest_period(period),
                            reserved=_C.reserved - row.reserved,
                        )
                    )
                # The upstream may have billed a request whose process died, so the whole hold is
                # charged (never more than was reserved under the cap); with the generation id the
                # request noted, the reconciler then replaces it by what the upstream billed.
                charged_in = select(_C.period).where(_C.id == row.connection_id).scalar_subquery()
                db.execute(
                    update(ledger)
                    .where(_L.id == row.id, _L.state == "reserved")
                    .values(
                        state="expired",
                        cost=row.reserved,
                        cost_source="estimated",
                        reconcile=row.generation_id is not None,
                        settled_at=now,
                        period=func.coalesce(charged_in, period),
                    )
                )
            return len(rows)

        return await self._run_handle().run(operation)

    async def ledger(self, app_id: str, app_user_id: str | None = None, limit: int = 100) -> list[LedgerEntry]:
        def operation(db: Connection) -> list[LedgerEntry]:
            query = select(ledger).where(_L.app_id == app_id)
            if app_user_id is not None:
                query = query.where(_L.app_user_id == app_user_id)
            # Both columns descending: the index read backwards, no sort (ties: newest id first).
            rows = db.execute(query.order_by(_L.created_at.desc(), _L.id.desc()).limit(limit)).all()
            return [_ledger_entry(row) for row in rows]

        return await self._run_handle().run(operation)


class _Contended(Exception):
    """The row changed between read and write; try the reservation again."""
