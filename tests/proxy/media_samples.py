"""Small, well-formed media files for the tests: a WAV, an MP4, a PDF, as data URLs and content parts."""

from __future__ import annotations

import base64
import struct
from typing import Any


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def wav(seconds: float, rate: int = 16_000) -> bytes:
    """16-bit mono PCM silence."""
    samples = bytes(int(seconds * rate) * 2)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4(seconds: int, timescale: int = 1_000) -> bytes:
    """An MP4 whose movie header states ``seconds`` (the frames themselves do not matter here)."""
    mvhd = bytes(4) + struct.pack(">IIII", 0, 0, timescale, seconds * timescale) + bytes(80)
    return (
        _box(b"ftyp", b"isom" + bytes(4) + b"isommp41") + _box(b"moov", _box(b"mvhd", mvhd)) + _box(b"mdat", bytes(512))
    )


def pdf(pages: int) -> bytes:
    kids = " ".join(f"{3 + page} 0 R" for page in range(pages))
    objects = [
        b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
        f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {pages} >> endobj".encode(),
        *(f"{3 + page} 0 obj << /Type /Page /Parent 2 0 R >> endobj".encode() for page in range(pages)),
    ]
    return b"%PDF-1.4\n" + b"\n".join(objects) + b"\n%%EOF\n"


def image_part(url: str = "https://example.com/cat.png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(data: bytes, audio_format: str) -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": audio_format}}


def video_part(url: str) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}}


def file_part(file_data: str, filename: str = "paper.pdf") -> dict[str, Any]:
    return {"type": "file", "file": {"filename": filename, "file_data": file_data}}


def user_message(*parts: dict[str, Any], text: str = "Describe this") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}]
