"""Money: integer micro-dollars, the one unit amounts cross function boundaries in.

Floats never hold money. Decimal appears only at the edges (parsing prices and
user input, printing), and charges round up so the user is never under-metered.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal, InvalidOperation, Overflow

__all__ = [
    "MICROS_PER_USD",
    "Micros",
    "micros_from_usd",
    "micros_to_usd",
    "usd_number",
    "usd_text",
]

Micros = int
"""An amount of money in millionths of a US dollar."""

MICROS_PER_USD = 1_000_000
_MICRO = Decimal(MICROS_PER_USD)


def micros_from_usd(amount: Decimal | int | str | float) -> Micros:
    """Convert dollars to micro-dollars, rounding up (a charge never rounds down).

    Floats (a JSON number such as an upstream's ``usage.cost``) are read through
    their shortest repr so ``0.1`` means ten cents, not 0.1000000000000000055.
    """
    if isinstance(amount, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(amount, float) and math.isfinite(amount):
        return _micros_of_float(amount)
    try:
        value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    try:
        return int((value * _MICRO).to_integral_value(rounding=ROUND_CEILING))
    except (InvalidOperation, Overflow) as exc:  # a decimal exponent past what arithmetic holds
        raise ValueError(f"not an amount: {str(amount)[:40]!r}") from exc


def _micros_of_float(amount: float) -> Micros:
    """What the Decimal of ``repr(amount)`` is in micro-dollars, rounded up, in integers alone (an
    upstream's ``usage.cost`` on every request: a third of the time through Decimal).

    ``repr`` is at most 17 significant digits with an exponent, so the value is ``digits * 10**shift``
    exactly, and its ceiling in millionths is that or a rounded-up integer division."""
    mantissa, _, exponent = repr(amount).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = int(whole + fraction)
    shift = int(exponent or "0") - len(fraction) + 6
    scale: int = 10 ** abs(shift)
    return digits * scale if shift >= 0 else -(-digits // scale)


def micros_to_usd(micros: Micros) -> Decimal:
    """Exact dollars for an amount of micro-dollars."""
    return Decimal(micros) / _MICRO


def usd_text(micros: Micros) -> str:
    """A plain decimal string for the wire (``"6.4"``, ``"0.000123"``), never exponent form."""
    return format(micros_to_usd(micros).normalize(), "f")


def usd_number(micros: Micros) -> float:
    """Dollars as a JSON number for the wire.

    At six decimals the float's shortest repr is the exact decimal, so ``6.4``
    prints as ``6.4``; arithmetic never happens on this value.
    """
    return float(micros_to_usd(micros))
