"""Memory stays flat: clients that leave mid-stream and revokes that stop a stream keep nothing alive.

Closing an upstream response while a read is pending made aiohttp raise one module-level
exception object into that read; each raise lengthened its traceback, so every relay frame, with
its response and chunks, stayed reachable for good. Counted here through real uvicorn: after many
disconnects and revokes, no upstream response and no relay frame is left in memory.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable

import aiohttp

from tests.proxy.conftest import Proxied, sse_events
from wattfare_embed.testing.waiting import poll

LONG_REPLY = " ".join(f"word{i}" for i in range(200))
ROUNDS = 30


def _live(kind: type) -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, kind))


def _relay_frames() -> int:
    """Frames of the proxy's relay still reachable (from tracebacks, tasks, anything)."""
    gc.collect()
    return sum(
        1
        for thing in gc.get_objects()
        if type(thing).__name__ == "frame" and thing.f_code.co_name in ("_relay_stream", "_forward", "_metered")
    )


def _connection_closed_traceback_depth() -> int:
    """How long aiohttp's shared "Connection closed" exception's traceback has grown."""
    shared = getattr(sys.modules["aiohttp.client_reqrep"], "_CONNECTION_CLOSED_EXCEPTION", None)
    depth, tb = 0, getattr(shared, "__traceback__", None)
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    return depth


async def _leave_mid_stream(proxy: Proxied, user: str) -> None:
    async with proxy.stream(user, max_tokens=300) as response:
        received = b""
        async for chunk in response.aiter_raw():
            received += chunk
            if len(sse_events(received)) >= 3:
                break  # the client goes while the proxy waits for the upstream's next chunk


async def _revoke_mid_stream(proxy: Proxied, user: str) -> None:
    async with proxy.stream(user, max_tokens=300) as response:
        received, revoked = b"", False
        async for chunk in response.aiter_raw():
            received += chunk
            if not revoked and len(sse_events(received)) >= 2:
                await proxy.wf.disconnect(user)
                revoked = True


async def _rounds(proxy: Proxied, users: list[str], one: Callable[[Proxied, str], object]) -> None:
    for user in users:
        await proxy.connect(user)
        await one(proxy, user)  # type: ignore[misc]
    for user in users:
        await proxy.settled(user, 1)


async def _nothing_open(proxy: Proxied) -> bool | None:
    return True if _live(aiohttp.ClientResponse) == 0 else None


async def test_many_mid_stream_disconnects_and_revokes_leave_no_response_or_frame_alive(
    lite: Proxied, user_id: str
) -> None:
    lite.fake.reply_text = LONG_REPLY
    lite.fake.chunk_delay = 0.05
    await _rounds(lite, [f"{user_id}-warm"], _leave_mid_stream)
    depth_before = _connection_closed_traceback_depth()

    await _rounds(lite, [f"{user_id}-gone{i}" for i in range(ROUNDS)], _leave_mid_stream)
    await _rounds(lite, [f"{user_id}-revoked{i}" for i in range(ROUNDS // 2)], _revoke_mid_stream)
    await asyncio.sleep(0.2)

    # Every response of the 45 streams is freed, and no relay frame survives its request.
    await poll(lambda: _nothing_open(lite), what="every upstream response to be freed", timeout=10)
    assert _relay_frames() == 0
    assert _connection_closed_traceback_depth() <= depth_before
