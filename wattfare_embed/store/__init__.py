"""Cap and usage state: the ``Store`` protocol and its SQL implementation."""

from .base import (
    ConnectionRecord,
    ConnectionState,
    ConsentRequest,
    GrantChange,
    GrantChangeResult,
    GrantRecord,
    GrantRefusal,
    LedgerEntry,
    NewConnection,
    NewGrant,
    Refusal,
    Reservation,
    ReservationRequest,
    Store,
)
from .pools import PoolSizes
from .revisions import migrations
from .schema import metadata
from .sql import SqlStore

__all__ = [
    "ConnectionRecord",
    "ConnectionState",
    "ConsentRequest",
    "GrantChange",
    "GrantChangeResult",
    "GrantRecord",
    "GrantRefusal",
    "LedgerEntry",
    "NewConnection",
    "NewGrant",
    "PoolSizes",
    "Refusal",
    "Reservation",
    "ReservationRequest",
    "SqlStore",
    "Store",
    "metadata",
    "migrations",
]
