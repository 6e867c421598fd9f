"""Waiting in tests for what settles in the background (a reconciled charge, a delivered webhook)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["poll"]

T = TypeVar("T")


async def poll(
    check: Callable[[], Awaitable[T | None]], *, what: str, timeout: float = 20.0, interval: float = 0.02
) -> T:
    """Call ``check`` until it returns something other than ``None``; fail after ``timeout`` seconds.

    ```python
    row = await poll(lambda: reconciled_row(ledger_id), what="the reconciled charge")
    ```
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
