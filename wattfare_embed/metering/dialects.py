"""What differs between the metered endpoints, as data the one flow in ``proxy.py`` reads.

Each ``Dialect`` says where an endpoint's billable request parts live (its reader), how its
output limits are set (``prepare``, ``None`` when it produces no output), and where the
billable output of its responses lives (the meter's reader). A new endpoint (``/responses``,
``/messages``) is a new ``Dialect``, not a new flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .billable import BillableRequest, read_chat_request, read_embeddings_request
from .limits import clamp_output
from .meter import OutputReader
from .output import chat_output

__all__ = ["CHAT", "EMBEDDINGS", "Dialect"]


@dataclass(frozen=True, slots=True)
class Dialect:
    kind: str  # the ledger's name for it
    upstream_path: str
    read_request: Callable[[dict[str, Any]], BillableRequest]
    prepare: Callable[[dict[str, Any], int], None] | None  # set the output limit the hold affords
    read_output: OutputReader


def _prepare_chat(payload: dict[str, Any], limit: int) -> None:
    clamp_output(payload, limit)
    if payload.get("stream") is True:
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}


CHAT = Dialect("chat", "/chat/completions", read_chat_request, _prepare_chat, chat_output)
EMBEDDINGS = Dialect("embeddings", "/embeddings", read_embeddings_request, None, chat_output)
