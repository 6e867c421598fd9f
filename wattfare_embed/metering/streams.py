"""Open requests that something outside them may have to stop: a revoke, or the client leaving.

A stop never closes the upstream response under a pending read. aiohttp answers such a read by
raising one module-level "Connection closed" exception object, and every raise of that one object
lengthens its traceback, keeping each relay frame (its response, chunks and tasks) alive for good.
So upstream reads run in a task a stop cancels (``read_upstream``); the response is closed after,
by the relay itself, with nothing waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.types import Message, Receive

__all__ = ["OpenStream", "OpenStreams", "Stopped", "read_upstream", "watch_disconnect"]

T = TypeVar("T")


class Stopped(Exception):
    """An upstream read ended by a revoke or by the client leaving (``OpenStream`` says which)."""


@dataclass(slots=True, eq=False)
class OpenStream:
    """One metered request, from its reservation to its last chunk."""

    connection_id: str
    app_user_id: str = ""
    revoked: bool = False
    disconnected: bool = False
    reading: asyncio.Future[Any] | None = None

    def stop(self) -> None:
        """Revoked: end the upstream read in progress, so the relay stops at once."""
        self.revoked = True
        self._interrupt()

    def client_left(self) -> None:
        self.disconnected = True
        self._interrupt()

    @property
    def stopped(self) -> bool:
        return self.revoked or self.disconnected

    def _interrupt(self) -> None:
        if self.reading is not None and not self.reading.done():
            self.reading.cancel()


async def read_upstream(stream: OpenStream, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` (reads from the upstream) so that ``stream.stop()`` cancels it: ``Stopped`` then.

    An error of the read comes back without the traceback it gathered on the way (a shared
    exception object must not carry frames of this request into the next)."""
    if stream.stopped:
        work.close()
        raise Stopped
    task = asyncio.ensure_future(work)
    stream.reading = task
    try:
        await _ended(task)
    except asyncio.CancelledError:
        # This request itself was cancelled (the server stopping): the read goes with it.
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    finally:
        stream.reading = None
    if task.cancelled():
        raise Stopped
    error = task.exception()
    if error is not None:
        raise error.with_traceback(None) from None
    return task.result()


def _ended(task: asyncio.Future[Any]) -> asyncio.Future[None]:
    """A future done when ``task`` is, whatever its outcome; cancelling it leaves ``task`` running.

    What ``asyncio.wait([task])`` does for one task, without its set, its second future and its
    pass over every task on the way out (it runs on every upstream read)."""
    ended: asyncio.Future[None] = task.get_loop().create_future()

    def wake(_: asyncio.Future[Any]) -> None:
        if not ended.done():  # cancelled when the request itself was
            ended.set_result(None)

    task.add_done_callback(wake)
    return ended


class OpenStreams:
    """The requests in flight in this process, by connection, so a revoke can stop them."""

    def __init__(self) -> None:
        self._by_connection: dict[str, set[OpenStream]] = {}

    def add(self, stream: OpenStream) -> None:
        self._by_connection.setdefault(stream.connection_id, set()).add(stream)

    def discard(self, stream: OpenStream) -> None:
        streams = self._by_connection.get(stream.connection_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._by_connection[stream.connection_id]

    def stop(self, connection_id: str) -> None:
        for stream in list(self._by_connection.get(connection_id, ())):
            stream.stop()

    def in_flight(self) -> list[tuple[str, str]]:
        """``(connection id, app user id)`` of every connection with a request open now."""
        return [
            (connection_id, next(iter(streams)).app_user_id) for connection_id, streams in self._by_connection.items()
        ]


async def watch_disconnect(receive: Receive, stream: OpenStream) -> None:
    """End the upstream read the moment the client goes, so billing stops where the provider supports it."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            stream.client_left()
            return
