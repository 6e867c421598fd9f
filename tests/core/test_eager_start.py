"""A coroutine started on the caller's stack and handed to a task at its first wait behaves as if
it had run on that task from the start: its context, and a cancellation however early."""

from __future__ import annotations

import asyncio
import contextvars

import anyio
import pytest

from wattfare_embed._eager import FirstStep, start_eagerly

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


async def test_a_first_step_that_never_waits_has_its_result_at_once() -> None:
    async def answering() -> int:
        return 7

    step = FirstStep(answering())

    assert step.done and step.result == 7
    assert await step == 7


async def test_a_first_step_that_waits_finishes_in_the_callers_own_task() -> None:
    caller = asyncio.current_task()
    seen: list[object] = []

    async def waiting_twice() -> str:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, lambda: None)
        seen.append(asyncio.current_task())
        return "done"

    step = FirstStep(waiting_twice())

    assert not step.done
    assert await step == "done"
    assert seen == [caller, caller]


async def test_an_error_after_the_first_wait_comes_out_of_the_await() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise LookupError("after the wait")

    with pytest.raises(LookupError, match="after the wait"):
        await FirstStep(failing())


async def test_a_deadline_around_the_rest_cancels_the_coroutine_where_it_waits() -> None:
    cleaned_up: list[str] = []

    async def stalled() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned_up.append("cancelled inside")

    step = FirstStep(stalled())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await step

    assert cleaned_up == ["cancelled inside"]


async def test_a_cancel_scope_entered_before_the_first_wait_is_left_in_the_same_task() -> None:
    # What Starlette's BaseHTTPMiddleware wraps `receive` in: a task group, entered before any wait.
    async def in_a_task_group() -> str:
        async with anyio.create_task_group() as group:
            group.start_soon(asyncio.sleep, 0)
            await asyncio.sleep(0)
        return "left cleanly"

    assert await FirstStep(in_a_task_group()) == "left cleanly"
