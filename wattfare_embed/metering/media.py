"""Sizing media sent inline (base64 data URLs) from their bytes, before anything is sent.

What a provider bills for audio and video follows their duration, and for a PDF its pages;
here those are read from the file itself: a WAV, FLAC or MP4/M4A header states its duration, an
MP3 lasts at most its size at MP3's lowest bitrate (8 kb/s), raw PCM at least 8 kHz mono, and a
PDF's page tree states its pages. What cannot be read this way (another container, an
encrypted PDF, media by URL) is *unsized*: the admission refuses it under a cap unless the app
configured a hold per item (``media_hold_usd``).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from decimal import ROUND_CEILING, Decimal

__all__ = ["DataUrl", "audio_seconds", "mp4_seconds", "parse_data_url", "pdf_pages"]

# MP3's lowest bitrate (MPEG-2.5 layer III): 8 kb/s.
_MP3_MIN_BYTES_PER_SECOND = 1_000
# Raw PCM as OpenRouter takes it: 16- or 24-bit samples, never below 8 kHz mono.
_PCM_MIN_BYTES_PER_SECOND = {"pcm16": 16_000, "pcm24": 24_000}
# No real WAV streams faster than 192 kHz 8-channel 32-bit; a header claiming more is not believed.
_WAV_MAX_BYTES_PER_SECOND = 192_000 * 8 * 4
# A PDF's object streams are inflated to find its pages, up to this much (a zip bomb stops here).
_PDF_INFLATE_LIMIT = 32 * 1024 * 1024


class DataUrl:
    """``data:<mime>;base64,<payload>``: its media type and its bytes, decoded on demand."""

    __slots__ = ("_bytes", "mime", "payload")

    def __init__(self, mime: str, payload: str) -> None:
        self.mime = mime
        self.payload = payload
        self._bytes: bytes | None = None

    @property
    def size(self) -> int:
        """The decoded size in bytes, from the payload's length (nothing is decoded)."""
        padding = len(self.payload) - len(self.payload.rstrip("="))
        return len(self.payload) * 3 // 4 - min(padding, 2)

    def data(self) -> bytes | None:
        """The decoded bytes, or ``None`` when the payload is not valid base64."""
        if self._bytes is None:
            try:
                self._bytes = base64.b64decode(self.payload, validate=False)
            except (binascii.Error, ValueError):
                return None
        return self._bytes


def parse_data_url(url: str) -> DataUrl | None:
    """A base64 data URL, or ``None`` for anything else (a link, a non-base64 data URL)."""
    if not url.startswith("data:"):
        return None
    head, comma, payload = url.partition(",")
    if not comma or not head.lower().endswith(";base64"):
        return None
    return DataUrl(head[5:-7].split(";", 1)[0].strip().lower(), payload.strip())


def _seconds(numerator: int, denominator: int) -> Decimal:
    return (Decimal(numerator) / Decimal(denominator)).to_integral_value(rounding=ROUND_CEILING)


def audio_seconds(media: DataUrl, audio_format: str) -> Decimal | None:
    """How long an inline audio clip can last, by its format; ``None`` when that cannot be known."""
    fmt = audio_format.lower().strip()
    if fmt == "mp3":
        return _seconds(media.size, _MP3_MIN_BYTES_PER_SECOND)
    if fmt in _PCM_MIN_BYTES_PER_SECOND:
        return _seconds(media.size, _PCM_MIN_BYTES_PER_SECOND[fmt])
    data = media.data()
    if data is None:
        return None
    if fmt == "wav":
        return _wav_seconds(data)
    if fmt == "flac":
        return _flac_seconds(data)
    if fmt in ("m4a", "mp4", "aac") and data[4:8] == b"ftyp":
        return mp4_seconds(data)
    return None


def _wav_seconds(data: bytes) -> Decimal | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if kind == b"fmt " and offset + 24 <= len(data):
            channels, sample_rate = struct.unpack_from("<HI", data, offset + 10)
            bits = struct.unpack_from("<H", data, offset + 22)[0]
            rate = min(sample_rate * channels * max(bits, 8) // 8, _WAV_MAX_BYTES_PER_SECOND)
            # The whole file at the stated rate: never shorter than the samples it holds.
            return _seconds(len(data), rate) if rate > 0 else None
        offset += 8 + size + (size & 1)
    return None


def _flac_seconds(data: bytes) -> Decimal | None:
    # STREAMINFO is the first metadata block: 20-bit sample rate, then 36-bit total samples.
    if data[:4] != b"fLaC" or len(data) < 26 or data[4] & 0x7F != 0:
        return None
    packed = int.from_bytes(data[18:26], "big")
    sample_rate, total = packed >> 44, packed & ((1 << 36) - 1)
    if sample_rate == 0 or total == 0:
        return None  # 0 samples means "unknown" in FLAC
    return _seconds(total, sample_rate)


def mp4_seconds(data: bytes) -> Decimal | None:
    """The duration an MP4-family file (mp4, m4a, mov) states in its movie header (``mvhd``)."""
    moov = _box(data, 0, len(data), b"moov")
    mvhd = _box(data, moov[0], moov[1], b"mvhd") if moov else None
    if mvhd is None:
        return None
    start, end = mvhd
    version = data[start] if start < end else 255
    if version == 0 and start + 20 <= end:
        timescale, duration = struct.unpack_from(">II", data, start + 12)
    elif version == 1 and start + 32 <= end:
        timescale, duration = struct.unpack_from(">IQ", data, start + 20)
    else:
        return None
    if timescale == 0 or duration in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return None
    return _seconds(duration, timescale)


def _box(data: bytes, start: int, end: int, wanted: bytes) -> tuple[int, int] | None:
    """The payload span of the first box of type ``wanted`` between ``start`` and ``end``."""
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1 and offset + 16 <= end:
            size, header = struct.unpack_from(">Q", data, offset + 8)[0], 16
        elif size == 0:
            size = end - offset
        if size < header:
            return None
        if kind == wanted:
            return offset + header, min(offset + size, end)
        offset += size
    return None


_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PAGE_COUNT = re.compile(rb"/Count\s+(\d{1,9})")
_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm")
_STREAM = re.compile(rb"stream\r?\n")


def pdf_pages(data: bytes) -> int | None:
    """The pages a PDF holds: the most its page tree or its page objects state, object streams
    included; ``None`` when they cannot be read (not a PDF, encrypted, an unreadable object stream)."""
    if not data.startswith(b"%PDF") or b"/Encrypt" in data:
        return None
    texts = [data]
    budget = _PDF_INFLATE_LIMIT
    for match in _OBJECT_STREAM.finditer(data):
        stream = _STREAM.search(data, match.end())
        if stream is None:
            return None
        end = data.find(b"endstream", stream.end())
        inflater = zlib.decompressobj()
        try:
            inflated = inflater.decompress(data[stream.end() : end if end >= 0 else len(data)], budget)
        except zlib.error:
            return None  # not Flate, or damaged: its pages cannot be counted
        budget -= len(inflated)
        if budget <= 0:
            return None
        texts.append(inflated)
    # Page objects may be spread over several object streams; the page tree's root counts them all.
    objects = sum(len(_PAGE_OBJECT.findall(text)) for text in texts)
    counted = max((int(n) for text in texts for n in _PAGE_COUNT.findall(text)), default=0)
    return max(objects, counted) or None
