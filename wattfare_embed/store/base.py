"""What the embed needs from a store: records and the ``Store`` protocol.

``SqlStore`` implements it for any SQLAlchemy database; another back end only
has to provide these operations with the same atomicity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ..money import Micros
from ._alerts import AlertDelivery, AlertFiring
from ._usage import MonthTotal, Receipt

__all__ = [
    "ConnectionRecord",
    "ConnectionState",
    "ConsentRequest",
    "FinalCharge",
    "GrantChange",
    "GrantChangeResult",
    "GrantRecord",
    "GrantRefusal",
    "LedgerEntry",
    "NewConnection",
    "NewGrant",
    "Refusal",
    "Reservation",
    "ReservationRequest",
    "Store",
    "refusal_for_headroom",
    "settle_charge",
]


class ConnectionState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    FUNDING_INVALID = "funding_invalid"


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One app user's connected budget, with spend already reset to the current period."""

    id: str
    app_id: str
    app_user_id: str
    status: ConnectionState
    authority: str
    monthly_cap: Micros
    period: str
    spent: Micros
    reserved: Micros
    grant_id: str | None
    upstream_url: str | None
    hard_limit: Micros | None
    created_at: int
    updated_at: int
    sealed_credential: str | None = field(default=None, repr=False)

    @property
    def remaining(self) -> Micros:
        """What is left of the cap this period: the cap less what was charged (holds not counted)."""
        return max(0, self.monthly_cap - self.spent)

    @property
    def available(self) -> Micros:
        """What a new request could hold now: the cap less what was charged and what is held."""
        return max(0, self.monthly_cap - self.spent - self.reserved)


@dataclass(frozen=True, slots=True)
class NewConnection:
    """A connection as consent produced it (insert, or replace the user's old one)."""

    app_id: str
    app_user_id: str
    authority: str
    monthly_cap: Micros
    sealed_credential: str
    grant_id: str | None = None
    upstream_url: str | None = None
    hard_limit: Micros | None = None


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    """Ask to hold up to ``wanted`` but at least ``minimum`` of a user's headroom."""

    app_id: str
    app_user_id: str
    wanted: Micros
    minimum: Micros
    kind: str
    model: str
    ttl_seconds: int = 3600
    # Chosen by the caller, so a reservation whose reply was lost can still be released by its id.
    ledger_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money held for one request, and the connection it was taken from."""

    ledger_id: str
    amount: Micros
    connection: ConnectionRecord


class Refusal(StrEnum):
    """Why a reservation was not made."""

    NOT_CONNECTED = "not_connected"
    REVOKED = "revoked"
    FUNDING_INVALID = "funding_invalid"
    BUDGET_EXCEEDED = "budget_exceeded"
    # Only the holds of other requests in flight stand in the way: try again when they finish.
    HELD_IN_FLIGHT = "held_in_flight"
    CONTENDED = "contended"  # the row kept changing under us; try again shortly


def refusal_for_headroom(cap: Micros, spent: Micros, reserved: Micros, minimum: Micros) -> Refusal | None:
    """Why a hold of at least ``minimum`` cannot be taken from this counter now, if it cannot."""
    headroom = cap - spent - reserved
    if headroom > 0 and headroom >= minimum:
        return None
    if reserved > 0 and cap - spent >= max(minimum, 1):
        return Refusal.HELD_IN_FLIGHT  # it would fit once the requests in flight settle
    return Refusal.BUDGET_EXCEEDED


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A pending authorize round trip, keyed by its one-time ``state``."""

    state: str
    app_id: str
    app_user_id: str
    authority: str
    verifier: str
    requested_cap: Micros
    return_to: str
    mode: str
    redirect_uri: str
    browser_hash: str
    created_at: int
    expires_at: int
    used_at: int | None = None
    grant_requests: int | None = None  # set when the round trip asks for a one-time grant


@dataclass(frozen=True, slots=True)
class NewGrant:
    """A one-time grant as consent produced it; ``token_hash`` is all the store keeps of its token."""

    id: str
    app_id: str
    token_hash: str
    authority: str
    requests_allowed: int
    max_cost: Micros
    sealed_credential: str
    expires_at: int
    authority_grant_id: str | None = None
    upstream_url: str | None = None


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A one-time grant and what is used of it."""

    id: str
    app_id: str
    authority: str
    requests_allowed: int
    requests_used: int
    max_cost: Micros
    spent: Micros
    reserved: Micros
    revoked: bool
    created_at: int
    expires_at: int
    authority_grant_id: str | None
    upstream_url: str | None
    sealed_credential: str | None = field(default=None, repr=False)


class GrantRefusal(StrEnum):
    """Why a request was not admitted against a grant."""

    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED_UP = "used_up"
    OVER_CAP = "over_cap"
    REVOKED = "revoked"
    HELD_IN_FLIGHT = "held_in_flight"  # the rest of the cap is held by requests still running
    CONTENDED = "contended"


@dataclass(frozen=True, slots=True)
class GrantChange:
    """A consent domain's signed event, to apply to the connection holding ``grant_id``.

    ``revoke`` ends the connection; otherwise ``monthly_cap`` is the grant's whole new cap
    (``None``: an event type this version does not act on, recorded and ignored), and
    ``hard_limit`` the upstream key's new limit when the event names one. The cap is clamped
    to ``max_cap`` and to the hard limit: the event's, else the one stored with the connection,
    since a cap above the key's own limit would only end in the upstream's refusals.
    """

    app_id: str
    event_id: str
    grant_id: str
    revoke: bool
    monthly_cap: Micros | None
    max_cap: Micros
    hard_limit: Micros | None = None


@dataclass(frozen=True, slots=True)
class GrantChangeResult:
    """What applying a ``GrantChange`` did: nothing (``duplicate``, or no such active grant), or
    ``applied`` to the connection ``connection_id``."""

    duplicate: bool
    applied: bool = False
    connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: str
    app_user_id: str
    kind: str
    model: str
    state: str
    reserved: Micros
    cost: Micros | None
    cost_source: str | None
    generation_id: str | None
    reconcile: bool
    created_at: int
    settled_at: int | None


@dataclass(frozen=True, slots=True)
class SpendAfterCharge:
    """A user's counter as the settle that charged it left it: what threshold alerts compare."""

    status: str
    monthly_cap: Micros
    period: str
    spent: Micros


@dataclass(frozen=True, slots=True)
class Settled:
    """What ``Store.settle_reading_spend`` did: ``final`` as ``settle`` returns it, and the user's
    counter after the charge where the settle's own statement returned it (``None``: read it)."""

    final: bool
    spend: SpendAfterCharge | None = None


@dataclass(frozen=True, slots=True)
class FinalCharge:
    """One request's final charge, as ``Store.settle`` takes it (``at``: when the request ended),
    with the usage's token counts."""

    ledger_id: str
    cost: Micros
    cost_source: str
    at: int
    generation_id: str | None = None
    reconcile: bool = False
    tokens_in: int | None = None
    tokens_out: int | None = None


class Store(Protocol):
    """Cap and usage state. Every method is one atomic transaction."""

    async def open(self) -> None:
        """Connect and create or migrate the tables; idempotent."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise unless the database answers (the health check)."""

    def listen_for_revocations(self, on_ended: Callable[[str], None]) -> None:
        """Call ``on_ended(connection_id)`` whenever any process ends a connection (``set_status``
        to revoked or funding invalid), as soon as the database says so. Registered before
        ``open``. A store that cannot be told does nothing: the proxy's poll finds the change."""

    @property
    def hears_revocations(self) -> bool:
        """Whether another process's revoke reaches this one at once right now (else by polling)."""
        return False

    async def get_connection(self, app_id: str, app_user_id: str, now: int) -> ConnectionRecord | None: ...

    async def find_connection_by_grant(self, grant_id: str, now: int) -> ConnectionRecord | None: ...

    async def save_connection(self, new: NewConnection, now: int) -> ConnectionRecord:
        """Insert, or replace the user's connection keeping this period's spend."""

    async def lower_cap(self, app_id: str, app_user_id: str, monthly_cap: Micros, now: int) -> ConnectionRecord | None:
        """Set a cap no higher than the current one; ``None`` when there is no active connection."""

    async def set_cap(self, app_id: str, app_user_id: str, monthly_cap: Micros, now: int) -> ConnectionRecord | None:
        """Set any cap (the authority approved it)."""

    async def set_status(
        self, app_id: str, app_user_id: str, status: ConnectionState, now: int, *, drop_credential: bool
    ) -> ConnectionRecord | None: ...

    async def reserve(self, request: ReservationRequest, now: int) -> Reservation | Refusal: ...

    async def settle(
        self,
        ledger_id: str,
        cost: Micros,
        cost_source: str,
        now: int,
        *,
        generation_id: str | None = None,
        reconcile: bool = False,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
    ) -> bool:
        """Finalise a reservation exactly once: charge ``cost``, free the hold, and record the
        usage's token counts (``None``: it told none) in the same final row. False if already final."""

    async def settle_reading_spend(
        self,
        ledger_id: str,
        cost: Micros,
        cost_source: str,
        now: int,
        *,
        generation_id: str | None = None,
        reconcile: bool = False,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
    ) -> Settled:
        """``settle``, also returning the user's counter after the charge when the statement that
        charged it can return it at no extra statement (the SQLite and PostgreSQL hot paths)."""

    async def settle_many(self, charges: Sequence[FinalCharge]) -> list[Settled]:
        """``settle_reading_spend`` for each charge, in order, one result each; a charge already
        final is ``Settled(False)`` and changes nothing for the others. A store that can commits
        them together (``SqlStore``: one transaction); this default settles them one by one."""
        return [await settle_charge(self, charge) for charge in charges]

    async def note_generations(self, entries: Sequence[tuple[str, str]]) -> None:
        """Record ``(ledger id, generation id)`` on reservations still open (the sweeper reconciles
        a dead process's reservation from it rather than charging the whole hold)."""

    async def reconcile(self, ledger_id: str, actual: Micros, now: int) -> bool:
        """Replace an estimated charge by the upstream's figure, applying the difference once, to the
        month of the charge (or the current month once that month's counter has rolled over)."""

    async def pending_reconciliations(self, limit: int, *, app_id: str | None = None) -> list[LedgerEntry]:
        """Estimated rows still waiting for the upstream's figure, oldest first (of one app, when given)."""

    async def give_up_reconciliation(self, ledger_id: str) -> None:
        """Keep the estimated charge for good (the upstream never produced a record)."""

    async def sweep_expired(self, now: int, *, app_id: str | None = None) -> int:
        """Charge reservations whose process died (their full hold) and free them; returns how many.

        ``app_id`` limits the sweep to one app's rows: apps sharing a database sweep their own."""

    async def ledger(self, app_id: str, app_user_id: str | None = None, limit: int = 100) -> list[LedgerEntry]: ...

    async def create_consent_request(self, request: ConsentRequest, *, keep_open: int = 10) -> None:
        """Store a request; the user's unused requests beyond their newest ``keep_open`` are dropped."""

    async def prune_consent_requests(self, now: int) -> int:
        """Forget requests an hour past their expiry; returns how many."""

    async def consume_consent_request(self, state: str, browser_hash: str, now: int) -> ConsentRequest | None:
        """Use a state once, only from the browser that asked for it, only before it expires."""

    async def find_consent_request(self, state: str) -> ConsentRequest | None: ...

    async def apply_grant_change(self, change: GrantChange, now: int) -> GrantChangeResult:
        """Record the event id and apply the change in one transaction: both or neither.

        A concurrent or later delivery of the same id is a ``duplicate`` that changes nothing;
        a failure leaves nothing recorded, so the domain's retry applies it then.
        """

    async def create_grant(self, grant: NewGrant, now: int) -> GrantRecord: ...

    async def find_grant(self, app_id: str, token_hash: str) -> GrantRecord | None: ...

    async def get_grant(self, grant_id: str) -> GrantRecord | None: ...

    async def reserve_grant(
        self, app_id: str, token_hash: str, request: ReservationRequest, now: int
    ) -> tuple[Reservation, GrantRecord] | GrantRefusal:
        """Admit one request against a grant: take one of its requests and hold up to
        ``request.wanted`` (at least ``request.minimum``) of its dollar cap, both in one
        transaction, so concurrent requests never pass either; the ledger row names the grant.
        ``settle``, ``reconcile`` and ``sweep_expired`` finish its rows as they do a connection's."""

    async def revoke_grant(self, app_id: str, grant_id: str, now: int) -> GrantRecord | None:
        """End a grant at once (its credential dropped); ``None`` when the app has no such grant."""

    async def forget_ended_grant_credentials(self, app_id: str, ended_before: int, now: int) -> int:
        """Drop the sealed funding credential of every grant of ``app_id`` that expired before
        ``ended_before`` (the grants stay); returns how many. The sweeper calls it when the store has it."""

    # -- receipts and reports ----------------------------------------------------------------

    async def receipts(
        self, app_id: str, app_user_id: str, period: str, *, before: tuple[int, str] | None, limit: int
    ) -> list[Receipt]:
        """One user's charged requests in a month, newest first, after the ``(created_at, id)`` cursor."""

    async def month_totals(self, app_id: str, period: str) -> list[MonthTotal]:
        """Every user's charges per model in a month, exact."""

    # -- threshold alerts --------------------------------------------------------------------

    async def fired_percents(self, app_id: str, app_user_id: str, period: str) -> set[int]:
        """The thresholds already fired for the user this period."""

    async def fire_alert(self, firing: AlertFiring, deliveries: Sequence[tuple[str, str]], now: int) -> bool:
        """Record a firing once per (app, user, period, percent) with its deliveries; True if this call did."""

    async def claim_alert_deliveries(
        self, app_id: str, channels: Sequence[str], now: int, *, lease_seconds: int, limit: int = 50
    ) -> list[AlertDelivery]:
        """Lease due deliveries on ``channels`` to the caller."""

    async def alert_delivered(self, delivery_id: str, now: int) -> None: ...

    async def alert_delivery_failed(self, delivery_id: str, retry_at: int, error: str) -> None: ...

    async def pending_alert_deliveries(self, app_id: str) -> int:
        """How many deliveries are not done yet."""


async def settle_charge(store: Store, charge: FinalCharge) -> Settled:
    """``store.settle_reading_spend`` of one ``FinalCharge``."""
    return await store.settle_reading_spend(
        charge.ledger_id,
        charge.cost,
        charge.cost_source,
        charge.at,
        generation_id=charge.generation_id,
        reconcile=charge.reconcile,
        tokens_in=charge.tokens_in,
        tokens_out=charge.tokens_out,
    )
