"""A logging handler that catches any record carrying a key: installed for every test by conftest.

It looks at everything a handler could print: the message and its arguments, the attributes
passed with ``extra``, the exception text and the stack. Keys are recognised by their shapes
(an app's secret key ``sk_live_…``/``sk_test_…``, an OpenRouter funding or management key
``sk-or-…``, a one-time grant token ``wfg_…``) and by value, for the keys a test registers with
``remember``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

__all__ = ["SecretsInLogs"]

KEY_SHAPES = re.compile(
    r"\bsk_(?:live|test)_[A-Za-z0-9]+_[A-Za-z0-9_\-]{16,}|\bsk-or-[A-Za-z0-9_\-]+|\bwfg_[A-Za-z0-9_\-]{16,}"
)
# What every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class SecretsInLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.known: set[str] = set()
        self.leaks: list[str] = []

    def remember(self, *secrets: str) -> None:
        self.known.update(secret for secret in secrets if secret)

    def emit(self, record: logging.LogRecord) -> None:
        for where, text in _texts(record):
            if KEY_SHAPES.search(text) or any(secret in text for secret in self.known):
                self.leaks.append(f"{record.name} {record.levelname} ({where}): {self._hidden(str(record.msg))[:300]}")
                return

    def _hidden(self, text: str) -> str:
        """The record as the failure shows it: the key itself is never printed either."""
        text = KEY_SHAPES.sub("<key>", text)
        for secret in self.known:
            text = text.replace(secret, "<key>")
        return text


def _texts(record: logging.LogRecord) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = [("message", str(record.msg))]
    with contextlib.suppress(Exception):  # a bad format string: the raw message was looked at
        texts.append(("formatted message", record.getMessage()))
    if record.args:
        texts.append(("args", _text(record.args)))
    extras = {name: value for name, value in vars(record).items() if name not in _STANDARD}
    if extras:
        texts.append(("extra", _text(extras)))
    if record.exc_info and record.exc_info[1] is not None:
        texts.append(("exception", logging.Formatter().formatException(record.exc_info)))
    if record.exc_text:
        texts.append(("exception text", record.exc_text))
    if record.stack_info:
        texts.append(("stack", record.stack_info))
    return texts


def _text(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return object.__repr__(value)
