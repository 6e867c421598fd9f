"""A coroutine started on the caller's stack, handed to a task only if it has to wait.

The proxy reserves in a task of its own, shielded, so that a request cancelled while its
reservation is under way still releases the hold. On SQLite the reservation usually ends
without awaiting anything (the transaction runs inline), so there is nothing to cancel half
way and the task, the shield and the two turns of the event loop they take are pure cost.
``start_eagerly`` runs the coroutine up to its first wait, as Python 3.12's eager tasks do: if it
finished, the result is there at once; if it waits, a task takes over from that very point.
``FirstStep`` does the same with no task at all: what waits is awaited, for the rest, by the very
task that started it, as a plain ``await`` would have (a deadline is then set only for a wait).

Unlike 3.12's eager tasks, the part before the first wait runs as the caller's task (that task is
``asyncio.current_task()`` there). So it is only for coroutines that enter no deadline before they
first wait: an ``asyncio.timeout`` entered there would, when it expires, cancel the caller rather
than the task that goes on waiting, and that wait would then have no deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["FirstStep", "start_eagerly"]

T = TypeVar("T")


def start_eagerly(coroutine: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """A future of ``coroutine``'s result: already done if it finished without waiting, else a task
    running the rest of it. An exception raised before its first wait is raised here."""
    # One context of its own for the whole run, as a task has: what the coroutine sets stays out of
    # the caller's, and a variable set before the first wait can be reset after it.
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coroutine.send, None)
    except StopIteration as finished:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        done.set_result(finished.value)
        return done
    return asyncio.get_running_loop().create_task(_Resumed(coroutine, waiting_on), context=context)


_SHOWN = frozenset({"__name__", "__qualname__", "cr_code", "cr_frame", "cr_running", "cr_await"})


class _Resumed(Coroutine[Any, Any, T]):
    """The rest of a coroutine already started, whose first wait was ``waiting_on``, for a task to
    run: its first step waits on that, every later one is the coroutine's own, and whatever the task
    throws, a cancellation before its first step included, is thrown into the coroutine."""

    __slots__ = ("_coroutine", "_started", "_waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on: Any = waiting_on
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            waiting_on, self._waiting_on = self._waiting_on, None
            return waiting_on
        return self._coroutine.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._started = True
        self._waiting_on = None
        if val is None and tb is None:
            return self._coroutine.throw(typ)
        return self._coroutine.throw(typ, val, tb)

    def close(self) -> None:
        self._coroutine.close()

    def __getattr__(self, name: str) -> Any:
        # The coroutine's own name, code and frame, so the task's repr and stack show where it waits.
        if name in _SHOWN:
            return getattr(self._coroutine, name)
        raise AttributeError(name)

    def __await__(self) -> Generator[Any, None, T]:
        raise TypeError("run by a task, not awaited")


class FirstStep(Generic[T]):
    """``coroutine`` run on the caller's stack up to its first wait (an exception before it is
    raised here): ``done`` and ``result`` when it finished without waiting, else awaited for the
    rest in the caller's own task, so whatever it entered (a cancel scope, a context) stays there."""

    __slots__ = ("_coroutine", "_waiting_on", "done", "result")

    def __init__(self, coroutine: Coroutine[Any, Any, T]) -> None:
        self._coroutine = coroutine
        self._waiting_on: Any = None
        try:
            self._waiting_on = coroutine.send(None)
        except StopIteration as finished:
            self.done = True
            self.result: T = finished.value
        else:
            self.done = False

    def __await__(self) -> Generator[Any, Any, T]:
        if self.done:
            return self.result
        coroutine, waiting_on = self._coroutine, self._waiting_on
        self._waiting_on = None
        # What ``await coroutine`` does from here: pass each wait up to the task and each wake-up
        # (a value, or an exception such as a cancellation) back down, until it returns.
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as thrown:  # every exception goes down, as await sends it
                try:
                    waiting_on = coroutine.throw(thrown)
                except StopIteration as finished:
                    result: T = finished.value
                    return result
            else:
                try:
                    waiting_on = coroutine.send(sent)
                except StopIteration as finished:
                    result = finished.value
                    return result
