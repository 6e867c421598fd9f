"""Revocations across processes on PostgreSQL: NOTIFY where a connection ends, LISTEN everywhere.

A status change that ends a connection (revoked, funding invalid) calls ``pg_notify`` inside its
own transaction: PostgreSQL delivers the notification when that transaction commits, and never
when it rolls back, so a revoke that failed stops nothing and one that held stops everything.

Each process that serves requests keeps one connection of its own that LISTENs (not one of the
pools': a pooled connection is handed to whoever asks). It is asked ``SELECT 1`` every few
seconds, since a connection can die without a word (a half-open TCP connection), and replaced
with backoff when lost. While it is down, notifications are missed: the proxy's re-read of a
long call's connection every two seconds, which SQLite relies on alone, covers the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.engine import URL

from ._postgres import _connect_kwargs

__all__ = ["CHANNEL", "RevocationListener", "notify_connection_ended"]

logger = logging.getLogger("wattfare_embed")

CHANNEL = "wattfare_connection_ended"
HEARTBEAT_SECONDS = 5.0
DEADLINE_SECONDS = 10.0  # for connecting, for LISTEN, for each heartbeat
_FIRST_DELAY, _MOST_DELAY = 0.1, 10.0


def notify_connection_ended(db: Connection, connection_id: str) -> None:
    """Tell every listening process, when this transaction commits, that a connection ended."""
    if db.dialect.name == "postgresql":
        db.execute(select(func.pg_notify(CHANNEL, connection_id)))


class RevocationListener:
    """One LISTEN connection, kept alive; ``on_ended(connection_id)`` for each notification."""

    def __init__(self, url: URL, on_ended: Callable[[str], None]) -> None:
        self._options = _connect_kwargs(url)
        self._on_ended = on_ended
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._was_listening = False
        self._reconnects = 0

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self, wait_seconds: float = 2.0) -> None:
        """Start listening in the background; wait a little for the first LISTEN, never fail on it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), wait_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        import asyncpg  # the `postgres` extra, as for the store itself

        delay = _FIRST_DELAY
        while True:
            self._was_listening = was_listening = False
            try:
                await self._listen(asyncpg)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                was_listening = self._was_listening
                # Said once per outage; the attempts that follow fail quietly until one succeeds.
                if was_listening or delay == _FIRST_DELAY:
                    logger.warning(
                        "listening for revocations failed (%s); revokes from other processes are seen by "
                        "polling until it reconnects",
                        type(exc).__name__,
                    )
            delay = _FIRST_DELAY if was_listening else min(delay * 2, _MOST_DELAY)
            await asyncio.sleep(delay)

    async def _listen(self, asyncpg: Any) -> None:
        connection = await asyncpg.connect(**self._options, timeout=DEADLINE_SECONDS)
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await asyncio.wait_for(connection.add_listener(CHANNEL, self._notified), DEADLINE_SECONDS)
            self._listening.set()
            self._was_listening = True
            if self._reconnects:
                logger.info("listening for revocations again")
            self._reconnects += 1
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), HEARTBEAT_SECONDS)
                if not lost.is_set():
                    await asyncio.wait_for(connection.fetchval("SELECT 1"), DEADLINE_SECONDS)
            raise ConnectionResetError("the listening connection was closed")
        finally:
            self._listening.clear()
            connection.terminate()

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._on_ended(payload)
        except Exception:
            logger.exception("stopping the calls of a revoked connection failed")
