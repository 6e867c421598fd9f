"""The floor: a proxy that only forwards, on the same server and client the embed uses.

    python -m bench.floor_proxy --port P --upstream-url URL --slow-upstream-url URL

A raw ASGI app under uvicorn (uvloop, httptools, one worker, as ``bench.serve_proxy``) that reads
the request, sends it upstream on one pooled aiohttp session and relays the answer (a stream chunk
by chunk), with no authentication, pricing, database or metering. Whatever a Python proxy of this
shape does, this process does too, so the bench shows it beside the embed: the gap between the two
is what metering costs, and the gap between it and calling the upstream directly is the price of a
hop through any such proxy on this machine. ``/fast/…`` goes to the upstream, ``/slow/…`` to the one
that pauses between chunks.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

__all__ = ["FloorProxy", "main"]

_PASSED = ("content-type", "authorization")
_RELAYED = ("content-type",)


class FloorProxy:
    def __init__(self, upstreams: dict[str, str]) -> None:
        self._upstreams = upstreams
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        route, _, rest = scope["path"].lstrip("/").partition("/")
        headers = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1")
            if key in _PASSED:
                headers[key] = value.decode("latin-1")
        assert self._session is not None
        async with self._session.post(f"{self._upstreams[route]}/{rest}", data=body, headers=headers) as response:
            relayed = [(k.encode(), response.headers[k].encode()) for k in _RELAYED if k in response.headers]
            if "text/event-stream" not in response.headers.get("content-type", ""):
                data = await response.read()
                relayed.append((b"content-length", str(len(data)).encode()))
                await send({"type": "http.response.start", "status": response.status, "headers": relayed})
                await send({"type": "http.response.body", "body": data})
                return
            await send({"type": "http.response.start", "status": response.status, "headers": relayed})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-url", required=True)
    parser.add_argument("--slow-upstream-url", required=True)
    args = parser.parse_args()
    app = FloorProxy({"fast": args.upstream_url, "slow": args.slow_upstream_url})
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
