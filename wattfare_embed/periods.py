"""Billing periods: the calendar month in UTC, keyed ``YYYY-MM``.

Counters carry their period key and reset lazily inside the statement that
touches them, so no job has to run at midnight on the first.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["period_bounds", "period_of"]


def period_of(unix_seconds: float) -> str:
    # Asked at every reservation and charge, nearly always for the same month: the last month
    # found is kept with its bounds (one tuple, replaced whole, so a thread reads it whole too).
    global _last_month
    start, end, period = _last_month
    if start <= unix_seconds < end:
        return period
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    period = f"{moment.year:04d}-{moment.month:02d}"
    first, after = period_bounds(period)
    _last_month = (first.timestamp(), after.timestamp(), period)
    return period


_last_month = (0.0, 0.0, "")  # [start, end) of the month period_of last found, in unix seconds, and its key


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of a period, in UTC."""
    year, month = (int(part) for part in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end
