"""A coroutine started on the caller's stack, handed to a task only if it has to wait.

The proxy reserves in a task of its own, shielded, so that a request cancelled while its
reservation is under way still releases the hold. On SQLite the reservation usually ends
without awaiting anything (the transaction runs inline), so there is nothing to cancel half
way and the task, the shield and the two turns of the event loop they take are pure cost.
``start_eagerly`` runs the coroutine up to its first wait, as Python 3.12's eager tasks do: if it
finished, the result is there at once; if it waits, a task takes over from that very point.

Unlike 3.12's eager tasks, the part before the first wait runs as the caller's task (that task is
``asyncio.current_task()`` there). So it is only for coroutines that enter no deadline before they
first wait: an ``asyncio.timeout`` entered there would, when it expires, cancel the caller rather
than the task that goes on waiting, and that wait would then have no deadline.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["start_eagerly"]

T = TypeVar("T")


def start_eagerly(coroutine: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """A future of ``coroutine``'s result: already done if it finished without waiting, else a task
    running the rest of it. An exception raised before its first wait is raised here."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration as finished:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        done.set_result(finished.value)
        return done
    return asyncio.ensure_future(_rest(coroutine, waiting_on))


async def _rest(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    result: T = await _resume(coroutine, waiting_on)
    return result


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> Generator[Any, Any, T]:
    """``yield from coroutine`` for a coroutine already started, whose first wait was ``waiting_on``:
    the task waits on what the coroutine waits on, and passes it what the task is sent or thrown."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # a cancellation of the task, passed on to where it waits
            try:
                waiting_on = coroutine.throw(exc)
            except StopIteration as finished:
                return finished.value  # type: ignore[no-any-return]
        else:
            try:
                waiting_on = coroutine.send(sent)
            except StopIteration as finished:
                return finished.value  # type: ignore[no-any-return]
