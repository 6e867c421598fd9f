"""How the fake bills a request, dimension by dimension, as OpenRouter's price list says it does.

The prompt side is read from the request (`PromptBill`): text tokens (media payloads left out),
images (per image at `image`, or as tokens at `image_token` or the prompt price), input audio
and video by their duration, files by their pages (plus the OCR engine when the file parser is
asked for it), web searches (a fee each, their results brought into the prompt) and cache writes
when the request asks for caching. The output side (`OutputBill`) is text, reasoning, image and
audio tokens, each at its own price where the model lists one. `FakeBilling` holds the sizes a
real provider would find once it fetched or decoded what the request points at.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ._fake_catalog import ModelPrices

EXA_SEARCH_FEE = Decimal("0.007")  # per search, up to 10 results (OpenRouter's web search docs)
EXA_EXTRA_RESULT = Decimal("0.001")
OCR_PER_PAGE = Decimal("0.002")  # mistral-ocr, $2 per 1,000 pages
AUDIO_TOKENS_PER_SECOND = 32
VIDEO_TOKENS_PER_SECOND = 290
_INCLUDED_RESULTS = 10


@dataclass
class FakeBilling:
    """What the fake finds in media it cannot see inside, and how much its models generate.

    Tests may change any of these between requests.
    """

    image_tokens: int = 1_000  # an image priced as tokens (a model listing no per-image price)
    remote_file_pages: int = 10  # a file by URL, once fetched
    page_tokens: int = 1_500  # a PDF page read natively
    remote_media_seconds: int = 30  # audio or video by URL, once fetched
    search_result_tokens: int = 800  # what one web result adds to the prompt
    reasoning_text: str = "Let me think this through step by step before I answer the question."
    output_images: int = 1  # images an image-output model makes when asked
    output_image_tokens: int = 1_290  # what one output image bills (Gemini's figure)
    output_image_bytes: int = 200_000  # its PNG's size
    audio_tokens_per_word: int = 15  # audio output: about 0.3 s a word at 50 tokens a second
    byok: bool = False  # report usage the way a BYOK-routed generation does
    byok_fee_rate: Decimal = Decimal("0.05")  # OpenRouter's fee beyond the free BYOK allowance


@dataclass
class PromptBill:
    text_tokens: int = 0
    images: int = 0  # billed per image
    image_tokens: int = 0  # images billed as tokens
    audio_tokens: int = 0
    video_tokens: int = 0
    file_pages: int = 0
    file_tokens: int = 0
    ocr_pages: int = 0
    searches: int = 0
    search_results: int = 0  # per search
    search_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h: bool = False

    @property
    def prompt_tokens(self) -> int:
        return (
            self.text_tokens
            + self.image_tokens
            + self.audio_tokens
            + self.video_tokens
            + self.file_tokens
            + self.search_tokens
        )

    def auxiliary_cost(self, prices: ModelPrices) -> Decimal:
        """Web searches and OCR: billed even when the generation itself is not."""
        extra = max(0, self.search_results - _INCLUDED_RESULTS) * EXA_EXTRA_RESULT
        search_fee = prices.web_search if prices.web_search > 0 else EXA_SEARCH_FEE + extra
        return self.searches * search_fee + self.ocr_pages * OCR_PER_PAGE

    def cost(self, prices: ModelPrices) -> Decimal:
        writes = self.cache_write_tokens
        write_price = prices.input_cache_write_1h if self.cache_write_1h else prices.input_cache_write
        if write_price <= 0:
            writes = 0
        text = self.text_tokens + self.file_tokens + self.search_tokens + self.video_tokens - writes
        return (
            prices.request
            + text * prices.prompt
            + writes * write_price
            + self.images * prices.image
            + self.image_tokens * (prices.image_token or prices.prompt)
            + self.audio_tokens * (prices.audio or prices.prompt)
            + self.auxiliary_cost(prices)
        )


@dataclass
class OutputBill:
    text_tokens: int = 0
    reasoning_tokens: int = 0
    image_tokens: int = 0
    audio_tokens: int = 0

    @property
    def completion_tokens(self) -> int:
        return self.text_tokens + self.reasoning_tokens + self.image_tokens + self.audio_tokens

    def cost(self, prices: ModelPrices) -> Decimal:
        return (
            self.text_tokens * prices.completion
            + self.reasoning_tokens * (prices.internal_reasoning or prices.completion)
            + self.image_tokens * (prices.image_output or prices.completion)
            + self.audio_tokens * (prices.audio_output or prices.completion)
        )


def _decoded(url: str) -> bytes | None:
    if not url.startswith("data:"):
        return None
    try:
        return base64.b64decode(url.partition(",")[2])
    except (binascii.Error, ValueError):
        return b""


def _wav_seconds(data: bytes) -> float:
    offset = data.find(b"fmt ")
    if data[:4] != b"RIFF" or offset < 0:
        return len(data) / 16_000
    channels, rate = struct.unpack_from("<HI", data, offset + 10)
    bits = struct.unpack_from("<H", data, offset + 22)[0]
    data_at = data.find(b"data")
    size: int = struct.unpack_from("<I", data, data_at + 4)[0] if data_at >= 0 else len(data)
    return size / max(1, int(rate) * int(channels) * int(bits) // 8)


def _mp4_seconds(data: bytes) -> float:
    at = data.find(b"mvhd")
    if at < 0:
        return 0.0
    timescale, duration = struct.unpack_from(">II", data, at + 16)
    return int(duration) / max(1, int(timescale))


_PAGE = re.compile(rb"/Type\s*/Page(?!s)")


def _media_without_payloads(content: Any) -> Any:
    """Content parts with inline payloads blanked: a provider decodes them, it does not read them as text."""
    if not isinstance(content, list):
        return content
    blanked = []
    for part in content:
        if isinstance(part, dict) and part.get("type") not in (None, "text"):
            blanked.append({"type": part.get("type")})
        else:
            blanked.append(part)
    return blanked


def read_prompt(body: dict[str, Any], messages: list[Any], prices: ModelPrices, knobs: FakeBilling) -> PromptBill:
    """What the prompt side of a chat request bills."""
    bill = PromptBill()
    text_view = [
        {**message, "content": _media_without_payloads(message.get("content"))}
        if isinstance(message, dict)
        else message
        for message in messages
    ]
    bill.text_tokens = -(-len(json.dumps(text_view)) // 4)
    caching = isinstance(body.get("cache_control"), dict)
    plugins: list[Any] = body["plugins"] if isinstance(body.get("plugins"), list) else []
    ocr = any(
        isinstance(p, dict) and p.get("id") == "file-parser" and (p.get("pdf") or {}).get("engine") == "mistral-ocr"
        for p in plugins
    )
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if not isinstance(part, dict):
                continue
            control = part.get("cache_control")
            if isinstance(control, dict):
                caching = True
                bill.cache_write_1h = bill.cache_write_1h or control.get("ttl") == "1h"
            _bill_part(bill, part, prices, knobs, ocr=ocr)
    if isinstance(body.get("cache_control"), dict) and body["cache_control"].get("ttl") == "1h":
        bill.cache_write_1h = True
    if caching:
        bill.cache_write_tokens = bill.text_tokens  # a first request writes the whole prompt to the cache
    _bill_searches(bill, body, knobs)
    return bill


def _bill_part(bill: PromptBill, part: dict[str, Any], prices: ModelPrices, knobs: FakeBilling, *, ocr: bool) -> None:
    kind = part.get("type")
    if kind == "image_url":
        if prices.image > 0:
            bill.images += 1
        else:
            bill.image_tokens += knobs.image_tokens
    elif kind == "input_audio":
        audio = part.get("input_audio") or {}
        data = audio.get("data", "")
        if data.startswith(("http://", "https://")):
            seconds = float(knobs.remote_media_seconds)
        else:
            raw = _decoded(data if data.startswith("data:") else "data:," + data) or b""
            fmt = audio.get("format")
            seconds = _wav_seconds(raw) if fmt == "wav" else len(raw) / 16_000  # 128 kb/s
        bill.audio_tokens += math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
    elif kind == "video_url":
        url = (part.get("video_url") or {}).get("url", "")
        video = _decoded(url)
        seconds = float(knobs.remote_media_seconds) if video is None else _mp4_seconds(video)
        bill.video_tokens += math.ceil(seconds * VIDEO_TOKENS_PER_SECOND)
    elif kind == "file":
        document = _decoded((part.get("file") or {}).get("file_data", ""))
        pages = knobs.remote_file_pages if document is None else len(_PAGE.findall(document))
        bill.file_pages += pages
        bill.file_tokens += pages * knobs.page_tokens
        bill.ocr_pages += pages if ocr else 0


def _bill_searches(bill: PromptBill, body: dict[str, Any], knobs: FakeBilling) -> None:
    searches, results = 0, 0
    plugins: list[Any] = body["plugins"] if isinstance(body.get("plugins"), list) else []
    for plugin in plugins:
        if isinstance(plugin, dict) and plugin.get("id") == "web" and plugin.get("enabled") is not False:
            searches += 1
            results = max(results, int(plugin.get("max_results") or 5))
    if ":online" in str(body.get("model")) and not searches:
        searches, results = 1, 5
    if isinstance(body.get("web_search_options"), dict):
        searches += 1
        results = max(results, 5)
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "openrouter:web_search":
            parameters = tool.get("parameters") or {}
            searches += int(parameters.get("max_uses") or 1)  # the model searches as often as it may
            results = max(results, int(parameters.get("max_results") or 5))
    bill.searches, bill.search_results = searches, results
    bill.search_tokens = searches * results * knobs.search_result_tokens
