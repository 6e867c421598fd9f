"""The sync openai client of ``wf.user(id).openai_sync()``: a call that would deadlock is refused up front."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai

from ._inprocess import refuse_on_loop_thread

__all__ = ["MeteredOpenAI"]


class MeteredOpenAI(openai.OpenAI):
    """An ``openai.OpenAI`` whose calls run on the embed's event loop, from another thread.

    The transport refuses a call made on that loop's own thread too, but the SDK would report it
    as a bare "Connection error."; refused here, the ``RuntimeError`` says what to do instead.
    """

    def __init__(self, *, embed_loop: Callable[[], asyncio.AbstractEventLoop], **options: Any) -> None:
        super().__init__(**options)
        self._embed_loop = embed_loop

    def _prepare_request(self, request: Any) -> None:
        refuse_on_loop_thread(self._embed_loop())
        super()._prepare_request(request)
