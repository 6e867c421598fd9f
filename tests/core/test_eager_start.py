"""A coroutine started on the caller's stack and handed to a task at its first wait behaves as if
it had run on that task from the start: its context, and a cancellation however early."""

from __future__ import annotations

import asyncio
import contextvars

from wattfare_embed._eager import start_eagerly

_SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def test_a_variable_set_before_the_first_wait_is_reset_after_it_and_never_reaches_the_caller() -> None:
    async def setting_across_a_wait() -> str:
        token = _SEEN.set("inside")
        await asyncio.sleep(0)
        seen = _SEEN.get()
        _SEEN.reset(token)  # a token from another context would raise ValueError here
        return seen

    assert await start_eagerly(setting_across_a_wait()) == "inside"
    assert _SEEN.get() == "unset"


async def test_a_variable_set_by_a_coroutine_that_never_waits_stays_out_of_the_callers_context() -> None:
    async def setting() -> int:
        _SEEN.set("inside")
        return 1

    started = start_eagerly(setting())
    assert started.done() and started.result() == 1
    assert _SEEN.get() == "unset"


async def test_a_task_cancelled_before_it_first_ran_cancels_the_coroutine_where_it_waits() -> None:
    cleaned_up: list[str] = []

    async def waiting() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cleaned_up.append("cancelled where it waited")
            raise

    task = start_eagerly(waiting())
    task.cancel()  # before the loop ran the task's first step
    await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled()
    assert cleaned_up == ["cancelled where it waited"]
