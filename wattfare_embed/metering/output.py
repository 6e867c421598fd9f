"""What a response bills as it streams, read from one chunk: the normalized view the meter counts.

``chat_output`` reads one ``delta`` (or a whole ``message``) of a chat completion and says how
much billable output it carries: characters of text (content, reasoning in any of its fields,
tool-call names and arguments, refusals, audio transcripts) and tokens of media (images and
audio, by their size). ``charged_cost`` reads what a usage object or a generation record says
the user was charged, BYOK included. Another endpoint's stream only needs readers of its own.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, TypeGuard

from ..money import Micros, micros_from_usd

__all__ = ["BYTES_PER_AUDIO_TOKEN", "BYTES_PER_IMAGE_TOKEN", "charged_cost", "chat_output"]

# Image output is billed in tokens (Gemini: 1,290 for a 1024x1024 image, whose PNG runs from about
# 1.3 to 3 MB): two thousand bytes a token counts it at or below its real figure, so a reply within
# its max_tokens is never mistaken for an overrun (one overrunning with images is cut a little late).
BYTES_PER_IMAGE_TOKEN = 2_000
# Audio output: 16-bit PCM at 24 kHz (48,000 bytes a second, the largest format streamed) at 50
# audio tokens a second (OpenAI's ~$0.24 a minute at $80 per million).
BYTES_PER_AUDIO_TOKEN = 960


def _text(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):  # content as parts
        return sum(_text(part.get("text")) for part in value if isinstance(part, dict))
    return 0


def _base64_bytes(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    return (len(value) - value.find(",") - 1) * 3 // 4 if value.startswith("data:") else len(value) * 3 // 4


_PLAIN = frozenset({"role", "content"})


def chat_output(body: dict[str, Any]) -> tuple[int, int]:
    """``(characters of text, tokens of media)`` that one delta or message adds to the bill."""
    content = body.get("content")
    if body.keys() <= _PLAIN:  # by far the most common delta: text alone
        return (len(content) if isinstance(content, str) else _text(content)), 0
    chars = _text(content) + _text(body.get("refusal"))
    # OpenRouter sends reasoning both as `reasoning` and as `reasoning_details` entries: the same
    # tokens, counted once.
    plain = max(_text(body.get("reasoning")), _text(body.get("reasoning_content")))
    details = body.get("reasoning_details")
    detailed = 0
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict):
            detailed += _text(detail.get("text")) + _text(detail.get("summary"))
            detailed += _base64_bytes(detail.get("data"))  # encrypted reasoning: a character a byte
    chars += max(plain, detailed)
    calls = body.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            chars += _text(function.get("arguments")) + _text(function.get("name"))
    media = 0
    images = body.get("images")
    for image in images if isinstance(images, list) else ():
        url = image.get("image_url") if isinstance(image, dict) else None
        url = url.get("url") if isinstance(url, dict) else url
        media += math.ceil(_base64_bytes(url) / BYTES_PER_IMAGE_TOKEN)
    audio = body.get("audio")
    if isinstance(audio, dict):
        media += math.ceil(_base64_bytes(audio.get("data")) / BYTES_PER_AUDIO_TOKEN)
        chars += _text(audio.get("transcript"))
    return chars, media


def _is_amount(value: Any) -> TypeGuard[int | float]:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):  # any size: math.isfinite would raise on one past a float's range
        return value >= 0
    return isinstance(value, float) and math.isfinite(value) and value >= 0


def _usd(value: Any) -> Decimal | None:
    if not _is_amount(value):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def charged_cost(record: dict[str, Any], cost_key: str = "cost") -> Micros | None:
    """What the user paid for a generation, from a usage object (``cost``) or a ``/generation``
    record (``total_cost``); ``None`` when it does not say.

    With BYOK (``is_byok``) OpenRouter's cost is only its own fee: the provider billed the user's
    own key for the inference as well (``upstream_inference_cost``), so both are charged.
    """
    stated = record.get(cost_key)
    if not _is_amount(stated):
        return None
    if record.get("is_byok") is not True:
        return micros_from_usd(stated)  # a float is read through its repr there too, in integers
    details = record.get("cost_details")
    holder = details if isinstance(details, dict) and "upstream_inference_cost" in details else record
    cost, upstream = _usd(stated), _usd(holder.get("upstream_inference_cost"))
    if cost is None or upstream is None:
        return None  # the larger part of the bill is not stated
    return micros_from_usd(cost + upstream)  # summed exactly, then rounded up once
