"""Open requests that something outside them may have to stop: a revoke, or the client leaving."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from starlette.types import Message, Receive

__all__ = ["OpenStream", "OpenStreams", "watch_disconnect"]


@dataclass(slots=True, eq=False)
class OpenStream:
    """One metered request, from its reservation to its last chunk."""

    connection_id: str
    app_user_id: str = ""
    revoked: bool = False
    disconnected: bool = False
    upstream: aiohttp.ClientResponse | None = None

    def stop(self) -> None:
        """Revoked: close the upstream so the relay ends at its next chunk."""
        self.revoked = True
        if self.upstream is not None:
            self.upstream.close()


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
    """Close the upstream the moment the client goes, so billing stops where the provider supports it."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            stream.disconnected = True
            if stream.upstream is not None:
                stream.upstream.close()
            return
