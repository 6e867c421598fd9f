"""The fast path's own asyncpg connections: taking one is a pop, giving it back an append.

``asyncpg.Pool`` costs about as much CPU in acquiring and releasing as the statement itself (a
proxy object per use, a timeout context and a shielded task per release, its reset hooks):
measured on ``SELECT 1``, 117-123 µs of CPU a statement through it, 57-63 µs through this; reserve
and settle are a statement each on every request.
This keeps only what those two need: at most ``max_size`` connections, handed out newest first
behind a semaphore (so a waiter that is cancelled takes nothing with it); any connection a
statement failed or was cancelled on is closed, never reused, since its state is unknown; one
connection is kept when idle and the others are closed once unused for ``idle_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ConnectionPool"]


class ConnectionPool:
    def __init__(
        self, connect: Callable[[], Awaitable[Any]], *, max_size: int, idle_seconds: float, keep: int = 1
    ) -> None:
        self._connect = connect
        self._slots = asyncio.Semaphore(max_size)
        self._idle: deque[tuple[Any, float]] = deque()  # (connection, when it was given back), newest last
        self._idle_seconds = idle_seconds
        self._keep = keep
        self._sweep: asyncio.TimerHandle | None = None
        self._closing = False

    async def open(self) -> None:
        """Open the connection kept when idle."""
        self._idle.append((await self._connect(), time.monotonic()))

    async def fetchrow(self, query: str, *arguments: Any) -> Any:
        return await self._run("fetchrow", query, arguments)

    async def fetchval(self, query: str, *arguments: Any) -> Any:
        return await self._run("fetchval", query, arguments)

    async def fetch(self, query: str, *arguments: Any) -> Any:
        return await self._run("fetch", query, arguments)

    async def execute(self, query: str, *arguments: Any) -> Any:
        return await self._run("execute", query, arguments)

    async def fetchmany(self, query: str, arguments: list[tuple[Any, ...]]) -> Any:
        """``query`` once for each tuple of ``arguments``, pipelined, in one implicit transaction."""
        return await self._run("fetchmany", query, (arguments,))

    async def _run(self, method: str, query: str, arguments: tuple[Any, ...]) -> Any:
        await self._slots.acquire()
        try:
            connection = await self._take()
            try:
                result = await getattr(connection, method)(query, *arguments)
            except BaseException:
                connection.terminate()  # mid-statement, failed or cancelled: never handed out again
                raise
            self._give_back(connection)
            return result
        finally:
            self._slots.release()

    async def _take(self) -> Any:
        while self._idle:
            connection, _since = self._idle.pop()
            if not connection.is_closed():
                return connection
        if self._closing:
            raise ConnectionError("the fast path's connections are closing")
        return await self._connect()

    def _give_back(self, connection: Any) -> None:
        if self._closing:
            connection.terminate()
            return
        self._idle.append((connection, time.monotonic()))
        if self._sweep is None and len(self._idle) > self._keep:
            self._sweep = asyncio.get_running_loop().call_later(self._idle_seconds, self._close_idle)

    def _close_idle(self) -> None:
        """Close connections unused for ``idle_seconds``, oldest first, down to the ``keep`` kept."""
        self._sweep = None
        cutoff = time.monotonic() - self._idle_seconds
        while len(self._idle) > self._keep and self._idle[0][1] <= cutoff:
            connection, _since = self._idle.popleft()
            connection.terminate()
        if len(self._idle) > self._keep:
            wait = self._idle[0][1] - cutoff
            self._sweep = asyncio.get_running_loop().call_later(max(wait, 0.01), self._close_idle)

    async def close(self) -> None:
        self._closing = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        while self._idle:
            connection, _since = self._idle.popleft()
            try:
                await asyncio.wait_for(connection.close(), 5)
            except (Exception, asyncio.CancelledError):
                connection.terminate()
