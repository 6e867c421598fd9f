"""How a store transaction runs: one call per transaction, whatever the database.

Each store operation is written once as a plain function over a synchronous
SQLAlchemy ``Connection``. For SQLite it runs whole through the stdlib driver, on
the loop, or on one writer thread while another process holds the file's write
lock (statement-by-statement aiosqlite measured ~5x slower); for every other
database it runs through the async engine with ``run_sync``, so asyncpg and
friends need no thread at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ._checkpoint import Checkpointer
from .pools import PoolSizes

__all__ = ["TransactionRunner", "runner_for_url"]

T = TypeVar("T")


class TransactionRunner(Protocol):
    dialect_name: str

    async def run(self, operation: Callable[[Connection], T]) -> T: ...

    async def dispose(self) -> None: ...


class SQLiteRunner:
    """SQLite transactions run on the event loop, with a writer thread for when the file is busy.

    A transaction is a few hundred microseconds of work under the GIL either way, so handing it
    to a thread saves the loop nothing and costs two thread switches; it runs inline instead, on
    a connection that never waits for the write lock (``busy_timeout=0``). When another process
    holds the lock, ``BEGIN IMMEDIATE`` fails at once, before anything ran, and the transaction
    goes to the writer thread, whose connection waits on the busy timeout off the loop.
    Transactions start with ``BEGIN IMMEDIATE`` so a read-then-write never hits ``SQLITE_BUSY``
    half way.
    """

    dialect_name = "sqlite"

    def __init__(self, url: URL, busy_timeout_ms: int = 5000) -> None:
        sync_url = url.set(drivername="sqlite")
        self._memory = sync_url.database in (None, "", ":memory:")
        self._inline = _sqlite_engine(sync_url, self._memory, busy_timeout_ms=0)
        # An in-memory database exists on one connection only, so it never leaves the loop.
        self._waiting = self._inline if self._memory else _sqlite_engine(sync_url, False, busy_timeout_ms)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wattfare-sqlite")
        self._held: Connection | None = None
        # A file's WAL is checkpointed on a thread, not inside a commit on the loop (``_checkpoint``).
        self._checkpoints = None if self._memory else Checkpointer(str(sync_url.database))

    def _transaction(self, engine: Engine, operation: Callable[[Connection], T]) -> T:
        with engine.begin() as connection:
            result = operation(connection)
        if self._checkpoints is not None:
            self._checkpoints.committed()
        return result

    async def run(self, operation: Callable[[Connection], T]) -> T:
        # One connection held for good: inline transactions never overlap (nothing in them
        # awaits), and checking a connection out of a pool and back costs more than the work.
        if self._held is None:
            self._held = self._inline.connect()
        try:
            with self._held.begin():
                result = operation(self._held)
            if self._checkpoints is not None:
                self._checkpoints.committed()
            return result
        except OperationalError as exc:
            if self._memory or not _is_busy(exc):
                raise
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, self._waiting, operation)

    async def run_raw(self, operation: Callable[..., T], *arguments: Any) -> T:
        """``operation(sqlite3_connection, *arguments)`` as one ``BEGIN IMMEDIATE`` transaction on
        the stdlib driver itself (the store's hot path: no SQLAlchemy execution per statement),
        inline, or on the writer thread while another process holds the write lock."""
        if self._held is None:
            self._held = self._inline.connect()
        raw = self._held.connection.dbapi_connection
        assert raw is not None
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if self._memory or not _is_busy_message(str(exc)):
                raise
        else:
            try:
                result = operation(raw, *arguments)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
            if self._checkpoints is not None:
                self._checkpoints.committed()
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._raw_transaction, operation, arguments)

    def _raw_transaction(self, operation: Callable[..., T], arguments: tuple[Any, ...]) -> T:
        with self._waiting.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            raw.execute("BEGIN IMMEDIATE")
            try:
                result = operation(raw, *arguments)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
        if self._checkpoints is not None:
            self._checkpoints.committed()
        return result

    async def dispose(self) -> None:
        loop = asyncio.get_running_loop()
        if self._checkpoints is not None:
            await loop.run_in_executor(self._executor, self._checkpoints.stop)
        await loop.run_in_executor(self._executor, self._waiting.dispose)
        if self._held is not None:
            self._held.close()
            self._held = None
        self._inline.dispose()
        self._executor.shutdown(wait=False)


def _is_busy(exc: OperationalError) -> bool:
    return _is_busy_message(str(exc.orig))


def _is_busy_message(message: str) -> bool:
    return "locked" in message or "busy" in message


def _sqlite_engine(url: URL, memory: bool, busy_timeout_ms: int) -> Engine:
    engine = create_engine(
        url,
        poolclass=StaticPool if memory else None,
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue the BEGIN, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not memory:
            # The runner's checkpoint thread does this, off the loop (``_checkpoint``).
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        # NORMAL in WAL mode survives a process crash; a power loss may lose the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# SQLSTATE 40001 (serialization failure) and 40P01 (deadlock): nothing was done; run it again.
_RETRYABLE_STATES = frozenset({"40001", "40P01"})
_RETRIES = 5


def _retryable(exc: DBAPIError) -> bool:
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state in _RETRYABLE_STATES


class AsyncEngineRunner:
    """Any SQLAlchemy async URL (``postgresql+asyncpg://…``); one ``run_sync`` per transaction.

    Every operation is a plain function of its connection, so a transaction the database
    aborted as a serialization failure or a deadlock is simply run again.
    """

    def __init__(self, url: URL, **engine_options: Any) -> None:
        self._engine: AsyncEngine = create_async_engine(url, **engine_options)
        self.dialect_name = self._engine.dialect.name

    async def run(self, operation: Callable[[Connection], T]) -> T:
        for attempt in range(_RETRIES):
            try:
                async with self._engine.begin() as connection:
                    return await connection.run_sync(operation)
            except DBAPIError as exc:
                if attempt == _RETRIES - 1 or not _retryable(exc):
                    raise
            await asyncio.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        await self._engine.dispose()


def runner_for_url(database_url: str, pool_sizes: PoolSizes | None = None) -> TransactionRunner:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return SQLiteRunner(url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+asyncpg")
    options: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        sizes = pool_sizes or PoolSizes()
        options["pool_size"] = sizes.engine
        options["max_overflow"] = sizes.engine_overflow
        # Every transaction ends in COMMIT or ROLLBACK inside `begin()`, so the pool's extra
        # rollback on each return is a wasted round trip.
        options["pool_reset_on_return"] = None
        # The store's statements are written for READ COMMITTED (row locks, then the newest row
        # version); a server defaulting to REPEATABLE READ would abort them under concurrency.
        options["isolation_level"] = "READ COMMITTED"
    return AsyncEngineRunner(url, **options)
