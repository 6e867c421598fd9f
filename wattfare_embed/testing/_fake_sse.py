"""Sending a response one ASGI message per frame, pausing between frames, noticing when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from starlette.types import Receive, Send

from ._fake_wire import JSONObject, compact_json

# OpenRouter's keep-alive comment; seen in the wild with CRLF line ends (§4.1), which parsers must survive.
PROCESSING_COMMENT = b": OPENROUTER PROCESSING\r\n\r\n"
DONE_EVENT = b"data: [DONE]\n\n"


def data_event(payload: JSONObject) -> bytes:
    return b"data: " + compact_json(payload) + b"\n\n"


def named_event(name: str, payload: JSONObject) -> bytes:
    """An event with its name on an `event:` line, as the Responses and Messages streams send them
    (the anthropic SDK reads only named events)."""
    return b"event: " + name.encode() + b"\ndata: " + compact_json(payload) + b"\n\n"


class ClientGone(Exception):
    """The client closed the connection, so nothing more can be delivered."""


class FrameSender:
    """Writes frames as separate ASGI body messages, so nothing is buffered, and watches for disconnects.

    Use as `async with FrameSender(receive, send, pause=0.05) as frames:`; `frames.send()` raises
    `ClientGone` as soon as the client has left, even in the middle of a pause.
    """

    def __init__(self, receive: Receive, send: Send, *, pause: float) -> None:
        self._receive = receive
        self._send = send
        self._pause = pause
        self._frames_sent = 0
        self._client_gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FrameSender:
        self._watcher = asyncio.create_task(self._watch_for_disconnect())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def send(self, frame: bytes, *, last: bool = False) -> None:
        if self._frames_sent:
            await self._pause_between_frames()
        if self._client_gone.is_set():
            raise ClientGone
        await self._send({"type": "http.response.body", "body": frame, "more_body": not last})
        self._frames_sent += 1

    async def end(self) -> None:
        """End the body cleanly, whatever the last frame was."""
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pause_between_frames(self) -> None:
        if self._pause <= 0:
            # Still yield, so the watcher gets a turn to notice a disconnect.
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._client_gone.wait(), self._pause)

    async def _watch_for_disconnect(self) -> None:
        # The request body was read before streaming began, so the next message is the disconnect.
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._client_gone.set()
                return
