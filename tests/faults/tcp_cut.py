"""A small TCP relay between the embed and its database or upstream, that a test can break.

``cut()`` resets every connection through it and refuses new ones until ``restore()``: a database
or upstream gone. With ``idle_close`` set, a connection idle that long is dead as an upstream's idle
timeout would leave it, but the close has not reached the client yet: the next request sent on it is
read by nobody and answered by a reset (the race a keep-alive pool meets with a shorter-lived upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["TcpCut", "tcp_cut"]


class TcpCut:
    def __init__(self, target_port: int, *, idle_close: float | None = None) -> None:
        self.target_port = target_port
        self.idle_close = idle_close
        self.port = 0
        self.refusing = False
        self.accepted = 0
        self.dropped_requests = 0  # requests that arrived on a connection already dead of idleness
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self.refusing = False

    async def stop(self) -> None:
        self.cut()

    def cut(self) -> None:
        """Reset every open connection and refuse new ones (nothing listens on the port)."""
        self.stop_listening()
        for writer in list(self._writers):
            _reset(writer)

    def stop_listening(self) -> None:
        """Refuse new connections; those open stay as they are."""
        self.refusing = True
        if self._server is not None:
            self._server.close()
            self._server = None

    async def restore(self) -> None:
        """Listen again, on the same port."""
        if self._server is None:
            await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            _reset(writer)
            return
        self.accepted += 1
        try:
            target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, target_writer))
        last_traffic = [time.monotonic()]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_client: bool) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    idle = time.monotonic() - last_traffic[0]
                    if from_client and self.idle_close is not None and idle > self.idle_close:
                        self.dropped_requests += 1  # the upstream closed this one as idle: unread
                        break
                    last_traffic[0] = time.monotonic()
                    sink.write(data)
                    await sink.drain()
            _reset(writer)
            _reset(target_writer)

        try:
            await asyncio.gather(pipe(reader, target_writer, True), pipe(target_reader, writer, False))
        finally:
            self._writers.difference_update((writer, target_writer))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0), as a dead peer or a dropped link does, not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


@asynccontextmanager
async def tcp_cut(target_port: int, *, idle_close: float | None = None) -> AsyncIterator[TcpCut]:
    relay = TcpCut(target_port, idle_close=idle_close)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
