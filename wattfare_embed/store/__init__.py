"""Cap and usage state: the ``Store`` protocol and its SQL implementation."""

from .base import (
    ConnectionRecord,
    ConnectionState,
    ConsentRequest,
    LedgerEntry,
    NewConnection,
    Refusal,
    Reservation,
    ReservationRequest,
    Store,
)
from .schema import metadata
from .sql import SqlStore

__all__ = [
    "ConnectionRecord",
    "ConnectionState",
    "ConsentRequest",
    "LedgerEntry",
    "NewConnection",
    "Refusal",
    "Reservation",
    "ReservationRequest",
    "SqlStore",
    "Store",
    "metadata",
]
