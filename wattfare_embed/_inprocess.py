"""httpx2 transports that call an ASGI app in this process, streaming.

httpx2's own ``ASGITransport`` buffers the whole response (three chunks 0.3 s
apart all arrive at once), which would turn a token stream into one late
blob. ``InProcessTransport`` hands each ``http.response.body`` message to the
caller as it is sent, and tells the app the client left when the response is
closed early. ``ThreadedInProcessTransport`` does the same for sync clients:
from another thread it runs each call on the app's event loop, waiting for
every step with a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import httpx2
from starlette.types import ASGIApp, Message

__all__ = ["InProcessTransport", "ThreadedInProcessTransport", "background_loop", "refuse_on_loop_thread"]

T = TypeVar("T")


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


# -- sync clients ---------------------------------------------------------------------------


def refuse_on_loop_thread(loop: asyncio.AbstractEventLoop) -> None:
    """Raise when called on ``loop``'s own thread: waiting there for work on ``loop`` never ends."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None  # no loop on this thread: waiting here is safe
    if running is loop:
        raise RuntimeError(
            "a sync Wattfare client was called on the event loop's own thread, where it would block the loop "
            "it waits for: use the async client (`wf.user(id).openai()`) in async code, or call the sync one "
            "from a worker thread (`await asyncio.to_thread(...)`)"
        )


class _Runner(Protocol):
    """Runs a coroutine on the app's loop and waits for its result, with a deadline."""

    def __call__(self, work: Coroutine[Any, Any, T], /) -> T: ...


class _ThreadedStream(httpx2.SyncByteStream):
    """A response body read from another thread, one awaited chunk at a time."""

    def __init__(self, response: httpx2.Response, run: _Runner) -> None:
        self._response = response
        self._run = run

    def __iter__(self) -> Iterator[bytes]:
        chunks = self._response.aiter_raw()

        async def next_chunk() -> bytes | None:
            try:
                return await chunks.__anext__()
            except StopAsyncIteration:
                return None

        while (chunk := self._run(next_chunk())) is not None:
            yield chunk

    def close(self) -> None:
        self._run(self._response.aclose())


class ThreadedInProcessTransport(httpx2.BaseTransport):
    """Route a sync httpx2 client's requests into an ASGI app served by an event loop on another thread.

    ``loop`` names that loop at each request (it may be started later than the client is made).
    Every wait (the response head, each chunk, the close) ends by the request's read timeout,
    or ``deadline`` seconds without one; the call is then cancelled on the loop, so the app sees
    its client leave.
    """

    def __init__(self, app: ASGIApp, loop: Callable[[], asyncio.AbstractEventLoop], *, deadline: float) -> None:
        self._transport = InProcessTransport(app)
        self._loop = loop
        self._deadline = deadline

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        loop = self._loop()
        refuse_on_loop_thread(loop)
        timeout = request.extensions.get("timeout", {}).get("read") or self._deadline

        def run(work: Coroutine[Any, Any, T]) -> T:
            refuse_on_loop_thread(loop)
            future = asyncio.run_coroutine_threadsafe(work, loop)
            try:
                return future.result(timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise httpx2.ReadTimeout(f"no answer from the embed within {timeout} s", request=request) from None

        forwarded = httpx2.Request(
            request.method, request.url, headers=request.headers, content=request.read(), extensions=request.extensions
        )
        response = run(self._transport.handle_async_request(forwarded))
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ThreadedStream(response, run),
            request=request,
        )


_BACKGROUND_LOOPS: weakref.WeakKeyDictionary[object, asyncio.AbstractEventLoop] = weakref.WeakKeyDictionary()
_BACKGROUND_LOCK = threading.Lock()


def background_loop(owner: object) -> asyncio.AbstractEventLoop:
    """A loop of ``owner``'s own on a daemon thread, for code that has no loop at all; it stops with ``owner``."""
    with _BACKGROUND_LOCK:
        loop = _BACKGROUND_LOOPS.get(owner)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="wattfare-embed-loop", daemon=True).start()
            _BACKGROUND_LOOPS[owner] = loop
            weakref.finalize(owner, loop.call_soon_threadsafe, loop.stop)
        return loop
