"""Keeping credentials out of everything we relay and log.

Two nets: every credential the process knows (the app's secret key, the upstream and
management keys, the key sealing credentials at rest, a funding key in use) is replaced
wherever it appears, and so is anything shaped like one (``sk-or-…``, ``sk_live_…``,
``Bearer …``, ``Basic …``, a JWT, a one-time grant's ``wfg_…``), known or not. Funding keys are
never registered one by one (there is one per user); they are caught by the credential in hand
and by their shape.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

__all__ = ["LOGGER_NAMES", "REDACTED", "RedactingFilter", "protect_logs", "redact", "remember_secrets"]

REDACTED = "[redacted]"
# Every logger the package logs through (a test keeps this list and the code in step).
LOGGER_NAMES = ("wattfare_embed", "wattfare_embed.consent_domain", "wattfare_embed.ai_sdk", "wattfare_embed.requests")

_SHAPES = re.compile(
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"  # an Authorization value, whatever token it carries
    r"|(?i:\bbasic\s+)[A-Za-z0-9+/]{12,}=*"
    r"|\bsk-or-[A-Za-z0-9_\-]+"  # OpenRouter keys: funding, provisioning, management
    r"|\bsk_(?:live|test)_[A-Za-z0-9_\-]+"  # the app's secret key
    r"|\bsk-[A-Za-z0-9_\-]{16,}"  # other OpenAI-style provider keys
    r"|\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"  # a JWT (session tokens)
    r"|\bwfg_[A-Za-z0-9_\-]{16,}"  # a one-time grant token
)
_SCHEME = re.compile(r"(?i)^(bearer|basic)(\s+)")
# Shorter strings are not treated as secrets: replacing them would garble ordinary text.
_MIN_SECRET_LENGTH = 8
_MAX_REMEMBERED = 256

_lock = threading.Lock()
_remembered: dict[str, None] = {}  # insertion-ordered; the oldest is forgotten past the bound
_known: re.Pattern[str] | None = None


def remember_secrets(*secrets: str | None) -> None:
    """Redact these exact strings from now on, wherever they appear."""
    global _known
    fresh = [secret for secret in secrets if secret and len(secret) >= _MIN_SECRET_LENGTH]
    if not fresh:
        return
    with _lock:
        for secret in fresh:
            _remembered.pop(secret, None)
            _remembered[secret] = None
        while len(_remembered) > _MAX_REMEMBERED:
            del _remembered[next(iter(_remembered))]
        _known = _alternation(_remembered)


def _alternation(secrets: Iterable[str]) -> re.Pattern[str] | None:
    # Longest first, so a secret containing another is replaced whole.
    ordered = sorted(secrets, key=len, reverse=True)
    return re.compile("|".join(re.escape(secret) for secret in ordered)) if ordered else None


def _keep_scheme(match: re.Match[str]) -> str:
    scheme = _SCHEME.match(match.group(0))
    return f"{scheme.group(1)}{scheme.group(2)}{REDACTED}" if scheme else REDACTED


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every known credential, ``secrets`` and anything credential-shaped replaced."""
    extra = [secret for secret in secrets if secret and len(secret) >= _MIN_SECRET_LENGTH]
    if extra:
        pattern = _alternation(extra)
        assert pattern is not None
        text = pattern.sub(REDACTED, text)
    known = _known
    if known is not None:
        text = known.sub(REDACTED, text)
    return _SHAPES.sub(_keep_scheme, text)


class RedactingFilter(logging.Filter):
    """Redacts a record's message, exception text and stack before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # Formatters print exc_text when it is set, so the traceback is shown redacted; the
            # exception itself is dropped, since a handler reading it would see the raw message.
            record.exc_text, record.exc_info = redact(record.exc_text), None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def protect_logs(*secrets: str | None) -> None:
    """Install the redacting filter on the package's loggers (once) and remember ``secrets``.

    A filter on a logger sees only that logger's own records, so each of the package's
    loggers gets it; every module logs through one of ``LOGGER_NAMES``.
    """
    remember_secrets(*secrets)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
