"""An httpx2 transport that calls an ASGI app in this process, streaming.

httpx2's own ``ASGITransport`` buffers the whole response (three chunks 0.3 s
apart all arrive at once), which would turn a token stream into one late
blob. This one hands each ``http.response.body`` message to the caller as it
is sent, and tells the app the client left when the response is closed early.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from starlette.types import ASGIApp, Message

__all__ = ["InProcessTransport"]


class _ResponseStream(httpx2.AsyncByteStream):
    def __init__(self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None], gone: asyncio.Event) -> None:
        self._chunks = chunks
        self._task = task
        self._gone = gone

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._chunks.get()
            if chunk is None:
                break
            if chunk:
                yield chunk
        await self._task

    async def aclose(self) -> None:
        if not self._task.done():
            self._gone.set()  # the app sees http.disconnect, closes the upstream and settles
            with contextlib.suppress(Exception):
                await self._task


class InProcessTransport(httpx2.AsyncBaseTransport):
    """Route an httpx2 client's requests straight into an ASGI app, with no socket."""

    def __init__(self, app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self._app = app
        self._client = client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "server": (request.url.host, request.url.port or 80),
            "client": self._client,
            "state": {},
        }
        started: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        gone = asyncio.Event()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                await chunks.put(message.get("body", b""))
                if not message.get("more_body", False):
                    await chunks.put(None)

        async def run() -> None:
            try:
                await self._app(scope, receive, send)
            finally:
                await chunks.put(None)
                if not started.done():
                    started.set_exception(RuntimeError("the app ended without a response"))

        task = asyncio.get_running_loop().create_task(run())
        try:
            start = await started
        except BaseException:
            gone.set()
            with contextlib.suppress(Exception):
                await task
            raise
        return httpx2.Response(
            status_code=start["status"],
            headers=[(name, value) for name, value in start.get("headers", [])],
            stream=_ResponseStream(chunks, task, gone),
            request=request,
        )
