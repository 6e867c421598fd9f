"""``DomainStore``: the consent domain's rows. Every method is one transaction.

The same one-call-per-transaction runner as the embed's store: SQLite on one
writer thread with ``BEGIN IMMEDIATE``, PostgreSQL through the async engine.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..money import Micros
from ..store._runner import TransactionRunner, runner_for_url
from . import schema
from .records import App, CodeRecord, Grant, GrantState, NewJob
from .revisions import migrations

__all__ = ["DomainStore", "new_id"]

_A, _U, _C, _G = schema.apps.c, schema.users.c, schema.codes.c, schema.grants.c


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _lookup_key(value: str, max_length: int) -> bool:
    """Whether ``value`` can name a row at all. Keys come from the network (a client id, a grant
    id in a path, an email), and PostgreSQL refuses a NUL in text outright: such a key names
    nothing, and is answered so without asking the database."""
    return 0 < len(value) <= max_length and value.isprintable()


def _app(row: Any) -> App:
    return App(
        id=row.id,
        name=row.name,
        publishable_key=row.publishable_key,
        secret_hash=row.secret_hash,
        signing_key=bytes.fromhex(row.signing_key),
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        webhook_url=row.webhook_url,
    )


def _grant(row: Any, app_name: str = "") -> Grant:
    return Grant(
        id=row.id,
        app_id=row.app_id,
        user_id=row.user_id,
        status=row.status,
        monthly_cap=row.monthly_cap,
        key_hash=row.key_hash,
        created_at=row.created_at,
        updated_at=row.updated_at,
        app_name=app_name,
        grant_requests=row.grant_requests,
        expires_at=row.expires_at,
        key_limit=row.key_limit,
    )


def _code(row: Any) -> CodeRecord:
    return CodeRecord(**{column: getattr(row, column) for column in schema.codes.c.keys()})  # noqa: SIM118


class DomainStore:
    """Apps, users, codes and grants of one consent domain (the outbox has its own module)."""

    def __init__(self, database_url: str, *, auto_migrate: bool = True) -> None:
        self.database_url = database_url
        self.auto_migrate = auto_migrate
        self._runner: TransactionRunner | None = None

    @property
    def runner(self) -> TransactionRunner:
        if self._runner is None:
            raise RuntimeError("the consent domain's store is not open; call `await store.open()` first")
        return self._runner

    async def open(self) -> None:
        """Migrate the tables to this release (or, with ``auto_migrate`` off, check them) and connect."""
        if self._runner is not None:
            return
        runner = runner_for_url(self.database_url)
        try:
            await migrations.prepare(runner, automatic=self.auto_migrate)
        except BaseException:
            await runner.dispose()
            raise
        self._runner = runner

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.dispose()

    async def setting(self, name: str, make: str) -> str:
        """A stored setting, created as ``make`` the first time (the first writer wins)."""

        def operation(db: Connection) -> str:
            found = db.execute(select(schema.settings.c.value).where(schema.settings.c.name == name)).scalar()
            if found is None:
                db.execute(insert(schema.settings).values(name=name, value=make))
                return make
            return str(found)

        try:
            return await self.runner.run(operation)
        except IntegrityError:
            return await self.runner.run(operation)

    # -- apps and users ---------------------------------------------------------------------

    async def add_app(self, app: App, now: int) -> None:
        values = {
            "id": app.id,
            "name": app.name,
            "publishable_key": app.publishable_key,
            "secret_hash": app.secret_hash,
            "signing_key": app.signing_key.hex(),
            "redirect_uris": json.dumps(list(app.redirect_uris)),
            "webhook_url": app.webhook_url,
            "created_at": now,
        }
        await self.runner.run(lambda db: db.execute(insert(schema.apps).values(**values)))

    async def find_app(self, publishable_key: str) -> App | None:
        if not _lookup_key(publishable_key, 100):
            return None

        def operation(db: Connection) -> App | None:
            row = db.execute(select(schema.apps).where(_A.publishable_key == publishable_key)).first()
            return _app(row) if row else None

        return await self.runner.run(operation)

    async def get_app(self, app_id: str) -> App | None:
        if not _lookup_key(app_id, 64):
            return None

        def operation(db: Connection) -> App | None:
            row = db.execute(select(schema.apps).where(_A.id == app_id)).first()
            return _app(row) if row else None

        return await self.runner.run(operation)

    async def add_user(self, email: str, password_hash: str, now: int) -> str:
        """A new built-in user; raises ``ValueError`` when the email is taken."""
        user_id = new_id("usr_")
        values = {"id": user_id, "email": email, "password_hash": password_hash, "created_at": now}
        try:
            await self.runner.run(lambda db: db.execute(insert(schema.users).values(**values)))
        except IntegrityError as exc:
            raise ValueError(f"a user with the email {email!r} exists already") from exc
        return user_id

    async def find_user(self, email: str) -> tuple[str, str] | None:
        """``(user id, password hash)`` for an email."""
        if not _lookup_key(email, 320):
            return None

        def operation(db: Connection) -> tuple[str, str] | None:
            row = db.execute(select(_U.id, _U.password_hash).where(_U.email == email)).first()
            return (row.id, row.password_hash) if row else None

        return await self.runner.run(operation)

    async def user_email(self, user_id: str) -> str | None:
        if not _lookup_key(user_id, 255):
            return None

        def operation(db: Connection) -> str | None:
            found = db.execute(select(_U.email).where(_U.id == user_id)).scalar()
            return str(found) if found is not None else None

        return await self.runner.run(operation)

    # -- codes ------------------------------------------------------------------------------

    async def add_code(self, code: CodeRecord) -> None:
        values = {column: getattr(code, column) for column in schema.codes.c.keys()}  # noqa: SIM118
        await self.runner.run(lambda db: db.execute(insert(schema.codes).values(**values)))

    async def use_code(self, code_hash: str, now: int) -> tuple[CodeRecord, bool] | None:
        """The code, and whether this was its first use (it is marked used either way)."""

        def operation(db: Connection) -> tuple[CodeRecord, bool] | None:
            first = db.execute(
                update(schema.codes).where(_C.code_hash == code_hash, _C.used_at.is_(None)).values(used_at=now)
            )
            row = db.execute(select(schema.codes).where(_C.code_hash == code_hash)).first()
            return (_code(row), first.rowcount == 1) if row else None

        return await self.runner.run(operation)

    # -- grants -----------------------------------------------------------------------------

    async def start_grant(
        self,
        code_hash: str,
        app_id: str,
        user_id: str,
        cap: Micros,
        now: int,
        *,
        grant_requests: int | None = None,
        expires_at: int | None = None,
    ) -> Grant:
        """A pending grant for a code being exchanged, linked to the code in the same transaction."""
        grant_id = new_id("grt_")

        def operation(db: Connection) -> Grant:
            db.execute(
                insert(schema.grants).values(
                    id=grant_id,
                    app_id=app_id,
                    user_id=user_id,
                    status=GrantState.PENDING,
                    monthly_cap=cap,
                    created_at=now,
                    updated_at=now,
                    grant_requests=grant_requests,
                    expires_at=expires_at,
                )
            )
            db.execute(update(schema.codes).where(_C.code_hash == code_hash).values(grant_id=grant_id))
            return _grant(db.execute(select(schema.grants).where(_G.id == grant_id)).one())

        return await self.runner.run(operation)

    async def activate_grant(self, grant_id: str, key_hash: str, now: int) -> bool:
        """Attach the minted key; False when the grant was revoked while the key was being made."""

        def operation(db: Connection) -> bool:
            result = db.execute(
                update(schema.grants)
                .where(_G.id == grant_id, _G.status == GrantState.PENDING)
                .values(status=GrantState.ACTIVE, key_hash=key_hash, updated_at=now)
            )
            return result.rowcount == 1

        return await self.runner.run(operation)

    async def get_grant(self, grant_id: str) -> Grant | None:
        if not _lookup_key(grant_id, 40):
            return None

        def operation(db: Connection) -> Grant | None:
            row = db.execute(select(schema.grants).where(_G.id == grant_id)).first()
            return _grant(row) if row else None

        return await self.runner.run(operation)

    async def live_grants(self, *, user_id: str, app_id: str | None = None) -> list[Grant]:
        """A user's pending and active grants (of one app, or of all with their names), oldest first."""

        def operation(db: Connection) -> list[Grant]:
            where = and_(_G.user_id == user_id, _G.status != GrantState.REVOKED)
            if app_id is not None:
                where = and_(where, _G.app_id == app_id)
            query = select(schema.grants, _A.name.label("app_name")).join(schema.apps, _A.id == _G.app_id)
            rows = db.execute(query.where(where).order_by(_G.created_at, _G.id)).all()
            return [_grant(row, row.app_name) for row in rows]

        return await self.runner.run(operation)

    async def set_cap(self, grant_id: str, cap: Micros, now: int, jobs: Sequence[NewJob]) -> Grant | None:
        """Change an active grant's cap and queue its webhook; ``None`` when it is not active."""

        def operation(db: Connection) -> Grant | None:
            changed = db.execute(
                update(schema.grants)
                .where(_G.id == grant_id, _G.status == GrantState.ACTIVE)
                .values(monthly_cap=cap, updated_at=now)
            )
            if changed.rowcount != 1:
                return None
            _queue(db, jobs)
            return _grant(db.execute(select(schema.grants).where(_G.id == grant_id)).one())

        return await self.runner.run(operation)

    async def revoke_grant(
        self, grant_id: str, now: int, reason: str, jobs_for: Callable[[Grant], Sequence[NewJob]]
    ) -> Grant | None:
        """Revoke once and queue the work it causes; ``None`` when it was revoked already."""

        def operation(db: Connection) -> Grant | None:
            changed = db.execute(
                update(schema.grants)
                .where(_G.id == grant_id, _G.status != GrantState.REVOKED)
                .values(status=GrantState.REVOKED, revoked_at=now, revoked_reason=reason, updated_at=now)
            )
            if changed.rowcount != 1:
                return None
            grant = _grant(db.execute(select(schema.grants).where(_G.id == grant_id)).one())
            _queue(db, jobs_for(grant))
            return grant

        return await self.runner.run(operation)

    async def queue(self, jobs: Sequence[NewJob]) -> None:
        await self.runner.run(lambda db: _queue(db, jobs))

    async def prune(self, now: int, *, keep_seconds: int = 30 * 86400) -> None:
        """Forget finished outbox rows, long-expired codes (a used code's grant lives on) and
        expired sessions."""
        _O = schema.outbox.c

        def operation(db: Connection) -> None:
            db.execute(delete(schema.outbox).where(_O.state != "pending", _O.finished_at < now - keep_seconds))
            db.execute(delete(schema.codes).where(_C.expires_at < now - 86400))
            db.execute(delete(schema.sessions).where(schema.sessions.c.expires_at <= now))

        await self.runner.run(operation)


def _queue(db: Connection, jobs: Sequence[NewJob]) -> None:
    now_ms = int(time.time() * 1000)
    for job in jobs:
        db.execute(
            insert(schema.outbox).values(
                kind=job.kind,
                app_id=job.app_id,
                ordering_key=job.ordering_key,
                payload=job.payload,
                state="pending",
                attempts=0,
                next_attempt_ms=now_ms + job.delay_ms,
                created_at=now_ms // 1000,
            )
        )
