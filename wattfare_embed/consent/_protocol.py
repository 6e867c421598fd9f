"""Wire rules of the Wattfare consent protocol, shared by ``HostedConsent`` and the reference domain.

Amounts are decimal strings of US dollars; webhooks are signed with a key derived
from the app's secret key (docs/consent-protocol.md, §6). Both sides import these,
so the embed and the domain can never disagree on a byte.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from ..crypto import derive_key
from ..money import Micros, micros_from_usd, micros_to_usd

__all__ = [
    "DISCOVERY_PATH",
    "GRANT_REVOKED",
    "GRANT_UPDATED",
    "MAX_WIRE_USD",
    "PROTOCOL_VERSION",
    "SIGNATURE_HEADER",
    "WEBHOOK_TOLERANCE_SECONDS",
    "WebhookSignatureError",
    "is_secure_url",
    "parse_wire_usd",
    "sign_webhook",
    "verify_webhook",
    "webhook_signing_key",
    "wire_usd",
]

PROTOCOL_VERSION = 1
GRANT_REVOKED = "grant.revoked"
GRANT_UPDATED = "grant.updated"
DISCOVERY_PATH = "/.well-known/wattfare-configuration"
SIGNATURE_HEADER = "Wattfare-Signature"
WEBHOOK_TOLERANCE_SECONDS = 300
_WEBHOOK_KEY_INFO = b"wattfare consent webhooks v1"
_CENT = Decimal("0.01")
# No cap or limit is anywhere near a trillion dollars; anything above is refused before it is
# converted (so "1e999999" cannot overflow) and every amount fits a 64-bit column in micro-dollars.
MAX_WIRE_USD = Decimal(10) ** 12
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def wire_usd(micros: Micros) -> str:
    """``"10.00"``, ``"0.25"``, ``"1.234567"``: at least cents, never exponent form, exact."""
    amount = micros_to_usd(micros)
    if amount == amount.quantize(_CENT):
        return format(amount.quantize(_CENT), "f")
    return format(amount.normalize(), "f")


def parse_wire_usd(value: object) -> Micros:
    """A positive decimal string of dollars (a JSON number is tolerated) as micro-dollars."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("an amount must be a decimal string of US dollars")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        amount = Decimal(text) if len(text) <= 40 else None
    except InvalidOperation:
        amount = None
    if amount is None or amount.is_nan():
        raise ValueError(f"not an amount of US dollars: {text[:40]!r}")
    if amount <= 0:
        raise ValueError("an amount must be more than zero")
    if amount > MAX_WIRE_USD:  # infinity too
        raise ValueError(f"an amount must be below {MAX_WIRE_USD:,} US dollars")
    micros = micros_from_usd(amount)
    if micros <= 0:
        raise ValueError("an amount must be more than zero")
    return micros


def webhook_signing_key(secret_key: str) -> bytes:
    """HKDF-SHA256 of the app's secret key (salt ``wattfare_embed``, info ``wattfare consent webhooks v1``).

    The domain keeps this derived key, never the secret key itself, so its database
    cannot mint the app's session tokens or open the app's stored credentials.
    """
    return derive_key(secret_key, _WEBHOOK_KEY_INFO)


def _digest(key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_webhook(key: bytes, timestamp: int, body: bytes) -> str:
    """The ``Wattfare-Signature`` header value for one delivery attempt."""
    return f"t={timestamp},v1={_digest(key, timestamp, body)}"


class WebhookSignatureError(ValueError):
    """The signature header is missing, malformed, wrong or outside the tolerance."""


def verify_webhook(key: bytes, header: str | None, body: bytes, now: int) -> int:
    """Check a ``Wattfare-Signature`` header; returns its timestamp.

    Every ``v1`` value is compared in constant time (a domain rotating keys may send two).
    """
    if not header:
        raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        # ASCII digits only: "²".isdigit() is true, and int("²") raises.
        if name == "t" and _TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header must look like t=<unix seconds>,v1=<hex>")
    if abs(now - timestamp) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookSignatureError("the webhook timestamp is more than 5 minutes away from now")
    expected = _digest(key, timestamp, body)
    matched = False
    for candidate in candidates:
        # No early exit: every candidate costs the same whether or not one matched.
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureError("the webhook signature does not match")
    return timestamp


def is_secure_url(url: str) -> bool:
    """``https``, or plain ``http`` to a loopback host (development and tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False
