"""What differs between the metered endpoints, as data the one flow in ``proxy.py`` reads.

Each ``Dialect`` says what an endpoint's request must hold (``check``), where its billable parts
live (``read_request``), where its output limit lives (``prepare``: ``max_tokens``,
``max_output_tokens``, a thinking budget; ``None`` when it produces no output), how its
responses carry output, usage and errors (``read_event``, ``usage_tokens``), and how the proxy
speaks on it: the event that ends a stream it stopped (``cut_off``), the body of an error
(``error_body``), where the end user's pseudonym goes (``name_user``), the header an SDK may
send the key in (``api_key_header``) and the client's headers the upstream also reads
(``passed_headers``). The pieces live beside each API (``chat_api``,
``responses_api``, ``messages_api``); a new endpoint is a new ``Dialect``, not a new flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import WattfareError
from .billable import BillableRequest, read_chat_request, read_embeddings_request
from .chat_api import (
    chat_cut_off,
    chat_usage_tokens,
    check_chat_request,
    check_completions_request,
    check_embeddings_request,
    prepare_chat,
    prepare_completions,
    read_chat_event,
    read_completion_event,
    read_completions_request,
)
from .messages_api import (
    check_messages_request,
    messages_cut_off,
    messages_error_body,
    messages_usage_tokens,
    name_messages_user,
    prepare_messages,
    read_messages_event,
    read_messages_request,
)
from .meter import EventReader, UsageTokens
from .responses_api import (
    check_responses_request,
    prepare_responses,
    read_responses_event,
    read_responses_request,
    responses_cut_off,
    responses_usage_tokens,
)

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "MESSAGES", "RESPONSES", "Dialect"]


def _openai_error_body(error: WattfareError) -> bytes:
    return error.body()


def _name_user(payload: dict[str, Any], pseudonym: str) -> None:
    payload["user"] = pseudonym


@dataclass(frozen=True, slots=True)
class Dialect:
    kind: str  # the ledger's name for it
    upstream_path: str
    check: Callable[[dict[str, Any]], None]  # refuse what the endpoint cannot take, before anything is held
    read_request: Callable[[dict[str, Any]], BillableRequest]
    prepare: Callable[[dict[str, Any], int], None] | None  # set the output limit the hold affords
    read_event: EventReader
    usage_tokens: UsageTokens
    cut_off: Callable[[WattfareError, int], bytes]  # (why, data events so far) -> what ends a stream we stopped
    operation: str = "chat"  # what telemetry names it (the GenAI conventions' gen_ai.operation.name)
    error_body: Callable[[WattfareError], bytes] = _openai_error_body
    name_user: Callable[[dict[str, Any], str], None] = _name_user
    api_key_header: str | None = None  # a header that may carry the secret key instead of Authorization
    passed_headers: tuple[str, ...] = ()  # the client's headers the upstream also needs


CHAT = Dialect(
    "chat",
    "/chat/completions",
    check_chat_request,
    read_chat_request,
    prepare_chat,
    read_chat_event,
    chat_usage_tokens,
    chat_cut_off,
)
COMPLETIONS = Dialect(
    "completions",
    "/completions",
    check_completions_request,
    read_completions_request,
    prepare_completions,
    read_completion_event,
    chat_usage_tokens,
    chat_cut_off,
    operation="text_completion",
)
EMBEDDINGS = Dialect(
    "embeddings",
    "/embeddings",
    check_embeddings_request,
    read_embeddings_request,
    None,
    read_chat_event,
    chat_usage_tokens,
    chat_cut_off,
    operation="embeddings",
)
RESPONSES = Dialect(
    "responses",
    "/responses",
    check_responses_request,
    read_responses_request,
    prepare_responses,
    read_responses_event,
    responses_usage_tokens,
    responses_cut_off,
)
MESSAGES = Dialect(
    "messages",
    "/messages",
    check_messages_request,
    read_messages_request,
    prepare_messages,
    read_messages_event,
    messages_usage_tokens,
    messages_cut_off,
    error_body=messages_error_body,
    name_user=name_messages_user,
    # The anthropic SDK sends its API key as `x-api-key`, and asks for its API version and beta
    # features in headers, which OpenRouter's skin reads too.
    api_key_header="x-api-key",
    passed_headers=("anthropic-version", "anthropic-beta"),
)
