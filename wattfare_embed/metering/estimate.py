"""Admission: the most a request can cost before it is sent, and how far its output may go.

Every billable dimension of the request (``BillableRequest``) is bounded at the dearest price
that could apply to it, or the request is refused, naming the part that cannot be bounded. No
tokenizer is downloaded: prompt text counts as one token per three bytes of its JSON (real
tokenizers average about four characters a token, so this over-counts English and roughly
matches dense scripts), plus a per-message overhead. Media and searches are bounded by the
figures below, each with its source; the README's guarantee table states them too. The
estimate only sizes the hold: the upstream's reported cost is what is charged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from ..errors import InvalidRequestError
from ..money import Micros
from .billable import BillableRequest, MediaPart
from .model_price import ModelPrice

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "IMAGE_TOKEN_BOUND",
    "MIN_COMPLETION_TOKENS",
    "PDF_TOKENS_PER_PAGE",
    "VIDEO_TOKENS_PER_SECOND",
    "Admission",
    "HoldPolicy",
    "affordable_tokens",
    "plan_admission",
    "prompt_text_tokens",
]

# Some providers refuse fewer (OpenRouter documents a floor of 16 for some).
MIN_COMPLETION_TOKENS = 16
# An image billed as prompt tokens, for a model that lists no per-image price: Qwen2.5-VL's
# default max_pixels (12,845,056 at 28x28 pixels a token) is 16,384 tokens, the most among the
# common vision tokenizers (GPT-4o/4.1 at most 8 tiles or 1,536 patches, Claude about 1,600,
# Gemini 258 a tile). Models that list one (OpenAI's, Anthropic's) are held at that price: it is
# their worst case already (gpt-4o-mini's $0.007225 is 48,169 tokens at its prompt price).
IMAGE_TOKEN_BOUND = 16_384
# Gemini bills 32 tokens a second of audio (OpenAI about 10): the most among providers taking audio.
AUDIO_TOKENS_PER_SECOND = 32
# Gemini: 258 tokens a frame at one frame a second, plus 32 for the sound track.
VIDEO_TOKENS_PER_SECOND = 300
# A PDF page read natively (Anthropic: 1,500-3,000 tokens of text, plus the page as an image of
# at most about 1,600), and OpenRouter's dearest parser engine (mistral-ocr, $2 per 1,000 pages).
PDF_TOKENS_PER_PAGE = 5_000
PDF_PARSER_PER_PAGE = Decimal(2_000)  # micro-dollars
# A web search run by OpenRouter's plugin: its dearest engine mode (Exa deep-reasoning, $0.015 a
# request including 10 results, $0.001 for each result beyond), unless the model lists dearer.
WEB_SEARCH_FEE = Decimal(15_000)
WEB_SEARCH_EXTRA_RESULT = Decimal(1_000)
_INCLUDED_RESULTS = 10
_TEXT_BYTES_PER_TOKEN = 3


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """How much one request may hold: ``max_request_hold`` caps it (by clamping its output, never
    below what its prompt needs); ``media_hold`` is held for each media item that cannot be sized
    from the request (by URL), which is refused when it is ``None``."""

    max_request_hold: Micros | None = None
    media_hold: Micros | None = None


# Not frozen: one is built for every request, and a frozen dataclass's __init__ (a call of
# object.__setattr__ per field) took 4 µs of admission's 11. Nothing changes one once planned.
@dataclass(slots=True)
class Admission:
    """The money to hold for a request and the output budget it fits."""

    prompt_tokens: int  # an upper bound on what the upstream counts as the prompt
    prompt_cost: Micros  # everything billed whatever the output: prompt, media, searches, request fee
    output_price: Decimal  # micro-dollars per output token, at the dearest output dimension that can apply
    completion_limit: int  # per choice, before the cap's clamp
    wanted: Micros
    minimum: Micros
    price: ModelPrice  # the prices at this prompt size: what the upstream is told not to exceed
    # `n` completions each up to the limit: the upstream bills every one of them.
    choices: int = 1
    images: bool = False  # the prompt has images (their price is pinned upstream too)
    # To price a usage that states tokens but no cost: the dearest rate an input token can bill at,
    # and what the prompt bills beyond its tokens (request, per-image, parser and search fees).
    input_price: Decimal = Decimal(0)
    prompt_fees: Micros = 0


def prompt_text_tokens(request: BillableRequest) -> int:
    """The prompt's text as tokens: one per three bytes of JSON, plus a per-message overhead."""
    return math.ceil(max(request.text_bytes, 0) / _TEXT_BYTES_PER_TOKEN) + 4 * request.messages + 8


def _media_tokens(part: MediaPart) -> int:
    """Prompt tokens a sized media part can bring in."""
    if part.kind == "image":
        return IMAGE_TOKEN_BOUND
    if part.pages is not None:
        return part.pages * PDF_TOKENS_PER_PAGE
    per_second = AUDIO_TOKENS_PER_SECOND if part.kind == "audio" else VIDEO_TOKENS_PER_SECOND
    return int(part.seconds or 0) * per_second


def _refuse_unbounded(request: BillableRequest, policy: HoldPolicy) -> None:
    if request.unbounded:
        raise InvalidRequestError(
            f"{', '.join(request.unbounded)} can be billed without a limit stated in advance, "
            "so the request cannot run under a spending cap"
        )
    if policy.media_hold is not None:
        return
    for part in request.media:
        if part.sized:
            continue
        how = (
            "by URL cannot be sized before the upstream fetches it" if part.by_url else "cannot be sized from its bytes"
        )
        raise InvalidRequestError(
            f"{part.where}: a {part.kind} {how}, so it cannot run under a spending cap "
            "(send it inline as base64, or set Wattfare(media_hold_usd=...) to hold a fixed amount per item)"
        )


def plan_admission(request: BillableRequest, price: ModelPrice, policy: HoldPolicy | None = None) -> Admission:
    policy = policy or HoldPolicy()
    _refuse_unbounded(request, policy)
    text_tokens = prompt_text_tokens(request)
    sized = [part for part in request.media if part.sized]
    search_tokens = sum(
        allowance.searches * allowance.results * math.ceil(allowance.result_chars / _TEXT_BYTES_PER_TOKEN)
        for allowance in request.searches
    )
    prompt_tokens = text_tokens + sum(_media_tokens(part) for part in sized) + search_tokens
    rates = price.at(prompt_tokens)
    # Any prompt token may be a cache write (or read) where the model prices those.
    per_input = max(rates.prompt, rates.input_cache_read, rates.input_cache_write)
    if request.cache_write_1h:
        per_input = max(per_input, rates.input_cache_write_1h)
    cost = Decimal(text_tokens + search_tokens) * per_input
    fees = rates.request
    for part in sized:
        if part.kind == "image":
            per_token = max(per_input, rates.image_token)
            if rates.image > 0:
                fees += rates.image
            else:
                cost += IMAGE_TOKEN_BOUND * per_token
        elif part.kind == "audio":
            cost += _media_tokens(part) * max(per_input, rates.audio, rates.input_audio_cache)
        elif part.pages is not None:
            cost += part.pages * PDF_TOKENS_PER_PAGE * per_input
            fees += part.pages * PDF_PARSER_PER_PAGE
        else:
            cost += _media_tokens(part) * per_input
    fees += (len(request.media) - len(sized)) * (policy.media_hold or 0)
    for allowance in request.searches:
        extra = max(0, allowance.results - _INCLUDED_RESULTS) * WEB_SEARCH_EXTRA_RESULT
        fees += allowance.searches * max(rates.web_search, WEB_SEARCH_FEE + extra)
    prompt_cost = math.ceil(cost + fees)

    output_price = max(rates.completion, rates.internal_reasoning)
    if "image" in request.output_modalities:
        output_price = max(output_price, rates.image_output)
    if "audio" in request.output_modalities:
        output_price = max(output_price, rates.audio_output)
    limit = (request.completion_limit or price.max_completion_tokens) if request.completes else 0
    floor = min(MIN_COMPLETION_TOKENS, limit)
    wanted = prompt_cost + math.ceil(limit * request.choices * output_price)
    minimum = prompt_cost + math.ceil(floor * request.choices * output_price)
    if policy.max_request_hold is not None:
        wanted = max(min(wanted, policy.max_request_hold), minimum)
    return Admission(
        prompt_tokens=prompt_tokens,
        prompt_cost=prompt_cost,
        output_price=output_price,
        completion_limit=limit,
        wanted=wanted,
        minimum=minimum,
        price=rates,
        choices=request.choices,
        images=any(part.kind == "image" for part in request.media),
        input_price=max(per_input, rates.image_token, rates.audio, rates.input_audio_cache),
        prompt_fees=math.ceil(fees),
    )


def affordable_tokens(admission: Admission, granted: Micros) -> int:
    """The largest output (per choice) the granted hold pays for (the whole limit when output is free)."""
    if admission.output_price <= 0:
        return admission.completion_limit
    spare = Decimal(granted - admission.prompt_cost) / (admission.output_price * admission.choices)
    tokens = int(spare.to_integral_value(rounding=ROUND_FLOOR))
    return max(0, min(admission.completion_limit, tokens))
