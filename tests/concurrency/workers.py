"""Worker processes for the cross-process tests: ``tests/concurrency/worker.py`` under uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2

from tests.log_guard import KEY_SHAPES
from wattfare_embed import AppKeys
from wattfare_embed.testing.live_server import free_port
from wattfare_embed.testing.waiting import poll

REPO = Path(__file__).resolve().parents[2]


def worker_environment(
    keys: AppKeys, database_url: str, upstream: str, environment: dict[str, str] | None = None
) -> dict[str, str]:
    """What a worker process (``tests.concurrency.worker``) is configured by."""
    return {
        **os.environ,
        **(environment or {}),
        "PYTHONPATH": str(REPO),
        "WATTFARE_SECRET_KEY": keys.secret_key,
        "WATTFARE_PUBLISHABLE_KEY": keys.publishable_key,
        "WATTFARE_DATABASE_URL": database_url,
        "WATTFARE_UPSTREAM_URL": upstream,
    }


@asynccontextmanager
async def running_worker(
    keys: AppKeys,
    database_url: str,
    upstream: str,
    *flags: str,
    environment: dict[str, str] | None = None,
    ready: Callable[[dict[str, Any]], bool] = lambda health: health["status"] == "ok",
) -> AsyncIterator[str]:
    """A worker serving the embed at the URL yielded, once its ``/health`` satisfies ``ready``.

    Its log (stderr) is read when it stops: like every record in the test process, none may
    carry a key."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.concurrency.worker", str(port), *flags],
        cwd=REPO,
        env=worker_environment(keys, database_url, upstream, environment),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/wattfare"
    try:
        async with httpx2.AsyncClient(timeout=10) as client:

            async def up() -> bool | None:
                if process.poll() is not None:
                    raise RuntimeError(f"the worker exited: {process.stderr.read().decode() if process.stderr else ''}")
                try:
                    return ready((await client.get(base + "/health")).json()) or None
                except httpx2.TransportError:
                    return None

            await poll(up, what="the worker up", timeout=60)
        yield base
    finally:
        process.terminate()
        _output, errors = process.communicate(timeout=10)
    log = errors.decode(errors="replace")
    assert not KEY_SHAPES.search(log) and keys.secret_key not in log, "a worker logged a key"
