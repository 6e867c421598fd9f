"""Measure what the metered proxy adds, on loopback, against the fake upstream.

Three processes: the fake OpenRouter, the proxy (uvicorn + the embed), and this
load generator (aiohttp). Prints one table; see the README for a recorded run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from wattfare_embed import Wattfare, new_key_pair
from wattfare_embed.store import NewConnection
from wattfare_embed.testing.live_server import free_port

USER = "bench-user"
MODEL = "openai/gpt-4o-mini"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}
STREAM_BODY = {**BODY, "stream": True}


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def _connect_user(database_url: str, secret: str, publishable: str) -> None:
    """The benchmark's one user, connected with a cap it will not reach."""
    wf = Wattfare(secret_key=secret, publishable_key=publishable, database_url=database_url)
    async with wf:
        sealed = wf.credentials.seal("sk-or-v1-bench", f"{wf.keys.app_id}/{USER}")
        connection = NewConnection(wf.keys.app_id, USER, "dev", 900_000_000, sealed)
        await wf.store.save_connection(connection, int(time.time()))


Call = Callable[[], Awaitable[float]]


async def _timed(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: object, stream: bool
) -> float:
    """Seconds to the whole body (non-streaming) or to the first content byte (streaming)."""
    start = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}: {await response.text()}")
        if not stream:
            await response.read()
            return time.perf_counter() - start
        first = None
        async for chunk in response.content.iter_any():
            if first is None and b"data:" in chunk:
                first = time.perf_counter() - start
        return first if first is not None else time.perf_counter() - start


async def _latencies(call: Call, count: int, concurrency: int) -> list[float]:
    for _ in range(min(50, count)):
        await call()
    results: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            results.append(await call())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _throughput(call: Call, seconds: float, concurrency: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def _chunk_gaps(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[float]:
    gaps: list[float] = []
    last = None
    async with session.post(url, json={**STREAM_BODY, "max_tokens": 12}, headers=headers) as response:
        async for _chunk in response.content.iter_any():
            now = time.perf_counter()
            if last is not None:
                gaps.append(now - last)
            last = now
    return gaps


async def bench(args: argparse.Namespace) -> None:
    pair = new_key_pair()
    fake_port, slow_port = free_port(), free_port()
    fake = _spawn("-m", "wattfare_embed.testing.fake_openrouter", "--port", str(fake_port))
    slow = _spawn("-m", "wattfare_embed.testing.fake_openrouter", "--port", str(slow_port), "--chunk-delay", "0.05")
    processes = [fake, slow]
    rows: list[tuple[str, str]] = []
    try:
        upstream = f"http://127.0.0.1:{fake_port}/api/v1"
        await _wait_ready(upstream + "/models")
        await _wait_ready(f"http://127.0.0.1:{slow_port}/api/v1/models")
        direct_headers = {"authorization": "Bearer sk-or-v1-bench"}
        proxy_headers = {"authorization": f"Bearer {pair.secret_key}", "x-wattfare-user": USER}
        databases = [("SQLite", f"sqlite+aiosqlite:///{Path(args.workdir) / 'bench.db'}")]
        if not args.no_postgres:
            databases.append(("PostgreSQL", args.postgres_url))
        slow_upstream = f"http://127.0.0.1:{slow_port}/api/v1"
        for label, database_url in databases:
            await _connect_user(database_url, pair.secret_key, pair.publishable_key)
            proxy_port, slow_proxy_port = free_port(), free_port()
            common = ["--database-url", database_url, "--secret-key", pair.secret_key]
            common += ["--publishable-key", pair.publishable_key]
            proxy = _spawn("-m", "bench.serve_proxy", "--port", str(proxy_port), "--upstream-url", upstream, *common)
            slow_proxy = _spawn(
                "-m", "bench.serve_proxy", "--port", str(slow_proxy_port), "--upstream-url", slow_upstream, *common
            )  # fmt: skip
            processes += [proxy, slow_proxy]
            proxy_url = f"http://127.0.0.1:{proxy_port}/wattfare/api/v1/chat/completions"
            direct_url = upstream + "/chat/completions"
            await _wait_ready(f"http://127.0.0.1:{proxy_port}/wattfare/api/v1/models")
            await _wait_ready(f"http://127.0.0.1:{slow_proxy_port}/wattfare/api/v1/models")
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:

                def caller(url: str, headers: dict[str, str], body: object, stream: bool) -> Call:
                    return lambda: _timed(session, url, headers, body, stream)

                for concurrency in (1, 32):
                    if label != "SQLite" and concurrency == 32:
                        continue
                    for stream in (False, True):
                        body = STREAM_BODY if stream else BODY
                        count = args.requests
                        direct = await _latencies(caller(direct_url, direct_headers, body, stream), count, concurrency)
                        proxied = await _latencies(caller(proxy_url, proxy_headers, body, stream), count, concurrency)
                        what = "first byte, streaming" if stream else "whole reply, non-streaming"
                        added_p50 = _p(proxied, 0.5) - _p(direct, 0.5)
                        added_p99 = _p(proxied, 0.99) - _p(direct, 0.99)
                        result = f"p50 +{added_p50:.2f} ms, p99 +{added_p99:.2f} ms"
                        result += f" (direct p50 {_p(direct, 0.5):.2f} ms)"
                        rows.append((f"{label}: added latency, {what}, concurrency {concurrency}", result))
                rate = await _throughput(caller(proxy_url, proxy_headers, BODY, False), args.seconds, 32)
                rows.append((f"{label}: metered requests/s, one proxy process, concurrency 32", f"{rate:.0f}"))
                if label == "SQLite":
                    slow_url = f"http://127.0.0.1:{slow_proxy_port}/wattfare/api/v1/chat/completions"
                    direct_gaps = await _chunk_gaps(session, f"{slow_upstream}/chat/completions", direct_headers)
                    proxy_gaps = await _chunk_gaps(session, slow_url, proxy_headers)
                    rows.append(
                        (
                            "chunk timing preserved (fake sends a chunk every 50 ms)",
                            f"median gap direct {statistics.median(direct_gaps) * 1000:.1f} ms, "
                            f"through the proxy {statistics.median(proxy_gaps) * 1000:.1f} ms, "
                            f"largest single gap {max(proxy_gaps) * 1000:.1f} ms",
                        )
                    )
            for process in (proxy, slow_proxy):
                process.terminate()
                process.wait(10)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
    width = max(len(name) for name, _ in rows)
    print(f"\nwattfare_embed benchmark — {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}, loopback, fake upstream in its own process\n")  # fmt: skip
    print(f"{'measure':<{width}}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("WATTFARE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
