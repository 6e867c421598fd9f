"""Why a reservation was refused, as the typed error the client gets."""

from __future__ import annotations

from ..errors import BudgetExceededError, FundingInvalidError, NotConnectedError, RateLimitedError, WattfareError
from ..money import Micros, usd_text
from ..status import ConnectionStatus
from ..store import Refusal

__all__ = ["IN_FLIGHT_RETRY_SECONDS", "needs_status", "refusal_error"]

IN_FLIGHT_RETRY_SECONDS = 2


def needs_status(refusal: Refusal) -> bool:
    """Whether the message for ``refusal`` states the user's budget (read after the refusal)."""
    return refusal in (Refusal.BUDGET_EXCEEDED, Refusal.HELD_IN_FLIGHT)


def refusal_error(refusal: Refusal, status: ConnectionStatus | None, minimum: Micros) -> WattfareError:
    if refusal is Refusal.NOT_CONNECTED:
        return NotConnectedError("this user has not connected an AI budget yet")
    if refusal is Refusal.REVOKED:
        return NotConnectedError("this user disconnected their AI budget; ask them to connect again")
    if refusal is Refusal.FUNDING_INVALID:
        return FundingInvalidError("the upstream refused this user's funding; ask them to connect again")
    if refusal is Refusal.CONTENDED:
        return RateLimitedError("too many requests for this user at once; try again", headers={"Retry-After": "1"})
    needs = f"this request needs at least ${usd_text(minimum)}"
    if refusal is Refusal.HELD_IN_FLIGHT:
        # Nothing is spent: other requests of this user hold the rest until they finish (OpenRouter's
        # own 402 says `limit_source: openrouter_in_flight_budget` for the same), so a retry is safe.
        held = f"${usd_text(status.held)} of the ${usd_text(status.remaining)} left" if status else "what is left"
        return BudgetExceededError(
            f"requests in flight hold {held} this month; {needs}: try again when they finish",
            headers={"Retry-After": str(IN_FLIGHT_RETRY_SECONDS), "x-should-retry": "true"},
        )
    if status is None:
        return BudgetExceededError(f"the monthly cap is reached: {needs}")
    cap, left = usd_text(status.monthly_cap), usd_text(status.remaining)
    return BudgetExceededError(f"the monthly cap of ${cap} is reached: ${left} left, {needs}")
