"""The load generator's calls: one timed request, a block of them, a throughput window, a timed stream.

Every function takes an ``Endpoint`` (where to send and as whom), so the same code measures
the upstream called directly, the embed, and a peer proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = [
    "Endpoint",
    "StreamTiming",
    "chat_body",
    "latencies",
    "stream_timing",
    "throughput",
    "timed_call",
]

MODEL = "openai/gpt-4o-mini"


@dataclass(frozen=True)
class Endpoint:
    """A chat completions URL, the headers that authenticate there, and the model name it routes."""

    url: str
    headers: dict[str, str]
    model: str = MODEL


def chat_body(endpoint: Endpoint, *, stream: bool, prompt: str = "Say hello", max_tokens: int = 8) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return body


class BadAnswer(RuntimeError):
    """A measured call did not succeed: a benchmark of errors would measure nothing."""


async def timed_call(session: aiohttp.ClientSession, endpoint: Endpoint, body: dict[str, Any]) -> float:
    """Seconds to the whole body (non-streaming) or to the first content event (streaming)."""
    stream = body.get("stream") is True
    start = time.perf_counter()
    async with session.post(endpoint.url, json=body, headers=endpoint.headers) as response:
        if response.status != 200:
            raise BadAnswer(f"{endpoint.url} answered {response.status}: {(await response.text())[:300]}")
        if not stream:
            await response.read()
            return time.perf_counter() - start
        first = None
        async for chunk in response.content.iter_any():
            if first is None and b"data:" in chunk:
                first = time.perf_counter() - start
        return first if first is not None else time.perf_counter() - start


Call = Callable[[], Awaitable[float]]


async def latencies(call: Call, count: int, concurrency: int = 1) -> list[float]:
    """``count`` timed calls, ``concurrency`` at a time."""
    results: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            results.append(await call())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def throughput(call: Call, seconds: float, concurrency: int) -> tuple[int, float]:
    """Calls completed in about ``seconds`` with ``concurrency`` in flight, and the exact time it took."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - start


@dataclass
class StreamTiming:
    """When each network read of one streamed reply arrived (seconds from sending the request)."""

    arrivals: list[float] = field(default_factory=list)
    events: int = 0

    @property
    def first(self) -> float:
        return self.arrivals[0]

    @property
    def duration(self) -> float:
        """From the first read to the last: the part of a stream that per-chunk work stretches."""
        return self.arrivals[-1] - self.arrivals[0]

    @property
    def gaps(self) -> list[float]:
        return [later - earlier for earlier, later in zip(self.arrivals, self.arrivals[1:], strict=False)]


async def stream_timing(session: aiohttp.ClientSession, endpoint: Endpoint, body: dict[str, Any]) -> StreamTiming:
    timing = StreamTiming()
    start = time.perf_counter()
    async with session.post(endpoint.url, json=body, headers=endpoint.headers) as response:
        if response.status != 200:
            raise BadAnswer(f"{endpoint.url} answered {response.status}: {(await response.text())[:300]}")
        async for chunk in response.content.iter_any():
            timing.arrivals.append(time.perf_counter() - start)
            timing.events += chunk.count(b"data:")
    return timing
