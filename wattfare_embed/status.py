"""``ConnectionStatus``: what an app shows about a user's budget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .money import Micros, usd_number
from .periods import period_bounds, period_of
from .store import ConnectionRecord, ConnectionState

__all__ = ["ConnectionStatus"]


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """A user's connection and budget for the current period.

    ``connected`` is false (never an error) when the user has not connected yet,
    revoked, or the funding was refused upstream; ``status`` says which.
    ``spent`` is what was charged this period and ``held`` what requests in flight
    have reserved; ``remaining`` is the cap less ``spent`` (what a user means by
    "left"), ``available`` the cap less both (what a new request could hold now).
    A budget bar shows ``spent``, never ``held``.
    """

    connected: bool
    status: str  # active | not_connected | revoked | funding_invalid
    app_user_id: str
    monthly_cap: Micros
    spent: Micros
    remaining: Micros
    period_start: datetime
    period_end: datetime
    authority: str | None
    held: Micros = 0
    available: Micros = 0

    @classmethod
    def of(cls, app_user_id: str, record: ConnectionRecord | None, now: int) -> ConnectionStatus:
        start, end = period_bounds(period_of(now))
        if record is None:
            return cls(False, "not_connected", app_user_id, 0, 0, 0, start, end, None)
        start, end = period_bounds(record.period)
        active = record.status is ConnectionState.ACTIVE
        return cls(
            connected=active,
            status=record.status.value,
            app_user_id=app_user_id,
            monthly_cap=record.monthly_cap,
            spent=record.spent,
            remaining=record.remaining if active else 0,
            period_start=start,
            period_end=end,
            authority=record.authority,
            held=record.reserved,
            available=record.available if active else 0,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "status": self.status,
            "appUserId": self.app_user_id,
            "monthlyUsd": usd_number(self.monthly_cap),
            "spentUsd": usd_number(self.spent),
            "heldUsd": usd_number(self.held),
            "remainingUsd": usd_number(self.remaining),
            "availableUsd": usd_number(self.available),
            "periodStart": self.period_start.isoformat().replace("+00:00", "Z"),
            "periodEnd": self.period_end.isoformat().replace("+00:00", "Z"),
            "authority": self.authority,
        }
