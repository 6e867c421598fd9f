"""Cap and usage state: the ``Store`` protocol and its SQL implementation."""

from ._alerts import AlertDelivery, AlertFiring
from ._statements import new_ledger_id
from ._usage import MonthTotal, Receipt
from .base import (
    ConnectionRecord,
    ConnectionState,
    ConsentRequest,
    FinalCharge,
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
    Settled,
    SpendAfterCharge,
    Store,
)
from .pools import PoolSizes
from .revisions import migrations
from .schema import metadata
from .sql import SqlStore

__all__ = [
    "AlertDelivery",
    "AlertFiring",
    "ConnectionRecord",
    "ConnectionState",
    "ConsentRequest",
    "FinalCharge",
    "GrantChange",
    "GrantChangeResult",
    "GrantRecord",
    "GrantRefusal",
    "LedgerEntry",
    "MonthTotal",
    "NewConnection",
    "NewGrant",
    "PoolSizes",
    "Receipt",
    "Refusal",
    "Reservation",
    "ReservationRequest",
    "Settled",
    "SpendAfterCharge",
    "SqlStore",
    "Store",
    "metadata",
    "migrations",
    "new_ledger_id",
]
