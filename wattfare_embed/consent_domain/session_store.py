"""The consent domain's sign-in sessions and passwords: what ends a session, server-side."""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select, update

from . import schema
from .storage import DomainStore

__all__ = ["SessionStore"]

_S, _U = schema.sessions.c, schema.users.c


class SessionStore:
    """Rows of ``wcd_sessions``, each operation one transaction on the domain's store."""

    def __init__(self, store: DomainStore) -> None:
        self._store = store

    async def start(self, id_hash: str, user_id: str, now: int, expires_at: int) -> None:
        values = {"id_hash": id_hash, "user_id": user_id, "created_at": now, "expires_at": expires_at}
        await self._store.runner.run(lambda db: db.execute(insert(schema.sessions).values(**values)))

    async def user_of(self, id_hash: str, now: int) -> str | None:
        """The user a live session belongs to; ``None`` once it expired or was ended."""

        def operation(db: Connection) -> str | None:
            found = db.execute(select(_S.user_id).where(_S.id_hash == id_hash, _S.expires_at > now)).scalar()
            return str(found) if found is not None else None

        return await self._store.runner.run(operation)

    async def end(self, id_hash: str) -> None:
        await self._store.runner.run(lambda db: db.execute(delete(schema.sessions).where(_S.id_hash == id_hash)))

    async def end_all(self, user_id: str | None = None) -> int:
        """End every session of ``user_id`` (of everyone when ``None``); returns how many ended."""

        def operation(db: Connection) -> int:
            query = delete(schema.sessions)
            if user_id is not None:
                query = query.where(_S.user_id == user_id)
            return int(db.execute(query).rowcount or 0)

        return await self._store.runner.run(operation)

    async def set_password(self, user_id: str, password_hash: str) -> int:
        """Change the password and end every session of the user, in one transaction."""

        def operation(db: Connection) -> int:
            db.execute(update(schema.users).where(_U.id == user_id).values(password_hash=password_hash))
            return int(db.execute(delete(schema.sessions).where(_S.user_id == user_id)).rowcount or 0)

        return await self._store.runner.run(operation)
