"""Which exceptions mean "the database is not there right now" (down, unreachable, locked)."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

__all__ = ["STORE_OUTAGES"]


def _outages() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [SQLAlchemyError, OSError, TimeoutError]
    try:
        import asyncpg
    except ImportError:  # the postgres extra is not installed
        pass
    else:
        errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    return tuple(errors)


# SQLAlchemy's errors (SQLite's "database is locked" included), a socket refused or reset, a
# deadline, and asyncpg's own errors on its fast path: each answered as the typed 503 ``unavailable``.
STORE_OUTAGES: tuple[type[BaseException], ...] = _outages()
