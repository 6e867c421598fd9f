"""Real processes for the fault suite: the fake upstream on its own (so it generates at its own
pace, not the proxy's), and app workers (``tests/concurrency/worker.py`` under uvicorn) that a
test may ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import httpx2

from tests.concurrency.workers import REPO, worker_environment
from wattfare_embed import AppKeys
from wattfare_embed.testing.live_server import free_port
from wattfare_embed.testing.waiting import poll


@asynccontextmanager
async def fake_upstream_process(*flags: str) -> AsyncIterator[str]:
    """The fake OpenRouter in a process of its own; yields its ``/api/v1`` base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "wattfare_embed.testing.fake_openrouter", "--port", "0", *flags],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("fake OpenRouter on "), line
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


async def upstream_spend(upstream: str) -> Decimal:
    """What the fake upstream billed in all, from its own ledger."""
    async with httpx2.AsyncClient() as client:
        answer = (await client.get(upstream.removesuffix("/api/v1") + "/_fake/spend")).json()
    return Decimal(answer["total"])


@dataclass
class Worker:
    base: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """``kill -9``: no shutdown, no settle, no cleanup."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@asynccontextmanager
async def worker_process(
    keys: AppKeys, database_url: str, upstream: str, environment: dict[str, str] | None = None
) -> AsyncIterator[Worker]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.concurrency.worker", str(port)],
        cwd=REPO,
        env=worker_environment(keys, database_url, upstream, environment),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/wattfare"
    try:
        async with httpx2.AsyncClient(timeout=5) as client:

            async def up() -> bool | None:
                if process.poll() is not None:
                    raise RuntimeError("the worker exited")
                try:
                    return True if (await client.get(base + "/health")).status_code == 200 else None
                except httpx2.TransportError:
                    return None

            await poll(up, what="the worker up", timeout=60)
        yield Worker(base, process)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
