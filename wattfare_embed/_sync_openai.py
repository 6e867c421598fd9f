"""The sync openai client of ``wf.user(id).openai_sync()``: a call that would deadlock is refused up front."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

import openai

from ._inprocess import refuse_on_loop_thread

__all__ = ["MeteredOpenAI"]


class MeteredOpenAI(openai.OpenAI):
    """An ``openai.OpenAI`` whose calls run on the embed's event loop, from another thread.

    The transport refuses a call made on that loop's own thread too, but the SDK would report it
    as a bare "Connection error."; refused here, the ``RuntimeError`` says what to do instead.
    """

    _embed_loop: Callable[[], asyncio.AbstractEventLoop] | None = None

    def __init__(self, *, embed_loop: Callable[[], asyncio.AbstractEventLoop] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._embed_loop = embed_loop

    def _prepare_request(self, request: Any) -> None:
        if self._embed_loop is not None:
            refuse_on_loop_thread(self._embed_loop())
        super()._prepare_request(request)

    def copy(self, *args: Any, **kwargs: Any) -> Self:
        # The SDK makes the copy with its own arguments only: carry the loop over.
        copied = super().copy(*args, **kwargs)
        copied._embed_loop = self._embed_loop
        return copied

    with_options = copy
