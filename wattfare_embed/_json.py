"""Strict JSON for what clients send: plain JSON an upstream and a database can take, or a typed refusal.

Python's ``json`` accepts more than JSON: ``NaN`` and ``Infinity`` (which it would send on
as non-JSON), numbers that overflow to infinity (``1e999999``), lone UTF-16 surrogates
(``"\\ud800"``, which no UTF-8 encoder or database takes), and nesting as deep as the
interpreter's recursion limit. ``parse_json`` refuses each of them with ``invalid_request``,
and refuses deep nesting by looking at the bytes before parsing anything.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic_core import from_json

from .errors import InvalidRequestError

__all__ = ["MAX_JSON_DEPTH", "nests_deeper_than", "parse_json", "read_reply"]

# Chat requests nest about six levels; tool schemas rarely pass twenty.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# Objects and arrays nest alike: both become square brackets, everything else is dropped.
_BRACKETS_ONLY = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")
# A surrogate escape (\ud800-\udfff) or a raw UTF-8-encoded surrogate; both decode to one. Two
# patterns, not one alternation: each then starts with a literal the regex engine skips ahead to
# (a MiB of prompt: 0.6 ms for both, against 8-11 ms for the alternation, which tries every byte).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"the number {text[:20]} is too large")
    return value


def _deeper(brackets: bytes, limit: int) -> bool:
    if b"[" * (limit + 1) in brackets:
        return True
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")  # one level of innermost pairs gone
        if not shorter or shorter == brackets:
            return False  # empty: shallow enough; unchanged: unbalanced, the parser says what is wrong
        brackets = shorter
    return True


def _fewer_than(body: bytes, byte: bytes, most: int) -> int | None:
    """How many ``byte`` are in ``body`` if that is at most ``most``, else None. Each step is a
    ``find`` (memchr), so a body with few of them is scanned at memory speed: ``bytes.count``
    compares byte by byte, 0.3-0.6 ms a MiB, more than parsing a MiB of prompt takes."""
    found = position = 0
    while (position := body.find(byte, position) + 1) > 0:
        found += 1
        if found > most:
            return None
    return found


def nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether ``body``'s arrays and objects nest deeper than ``limit``, decided before parsing.

    Everything but brackets is dropped and innermost pairs removed ``limit`` times, all of it
    in C. Brackets inside strings are counted at first (an upper bound, cheap); only when that
    bound is too deep are the strings blanked out (a regular expression) and the count redone.
    """
    squares = _fewer_than(body, b"[", limit)
    if squares is not None and _fewer_than(body, b"{", limit - squares) is not None:
        return False  # not even that many brackets: the common case, decided at once
    if not _deeper(body.translate(_BRACKETS_ONLY, _NOT_BRACKET), limit):
        return False
    return _deeper(_STRING.sub(b"", body).translate(_BRACKETS_ONLY, _NOT_BRACKET), limit)


# Built once: ``json.loads`` with hooks builds a decoder (and its scanner) on every call.
_STRICT = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def parse_json(body: bytes, what: str = "the request body") -> Any:
    """``body`` as JSON, or ``InvalidRequestError`` saying what is wrong with it."""
    if nests_deeper_than(body, MAX_JSON_DEPTH):
        raise InvalidRequestError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        # As ``json.loads`` reads bytes: UTF-8, -16 or -32, surrogates kept for the check below.
        payload = _STRICT.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except _NotJson as exc:
        raise InvalidRequestError(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # a backstop: the depth check above lets nothing this deep through
        raise InvalidRequestError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"{what} is not valid JSON") from exc
    # Each search runs only when its first byte is there at all (memchr, where a MiB of text takes
    # the regular expression about half a millisecond): a backslash, or 0xED (Hangul and surrogates).
    if (b"\\" in body and _SURROGATE_ESCAPE.search(body)) or (b"\xed" in body and _RAW_SURROGATE.search(body)):
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequestError(f"{what} holds a lone UTF-16 surrogate, which is not text") from exc
    return payload


def read_reply(body: bytes) -> Any:
    """An upstream's JSON reply, read as ``json.loads`` reads it (``ValueError`` when it cannot).

    Read in Rust first, about three times faster; what that parser refuses (a byte-order mark,
    UTF-16, a lone surrogate escape) goes to ``json.loads``, so nothing it reads differs.
    """
    try:
        return from_json(body)
    except ValueError:
        return json.loads(body)
