"""One metered request as telemetry sees it: the time at each fixed point, and what it cost.

The proxy calls a ``RequestTrace`` at fixed points of a request: ``authenticated``, ``priced``,
``reserved``, ``upstream_first_byte``, ``upstream_last_byte``, ``settling``, ``settled`` and, once,
``finished``.
The trace only notes the clock and the figures; everything is exported when the request has
finished, after its answer's last byte went out (spans with their real start and end times,
metrics, one log record), so a point on the way costs a clock read and a few assignments.
With telemetry off the proxy holds ``NO_TRACE``, one shared object whose methods do nothing:
no allocation, a few empty calls a request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._redaction import redact
from ..money import Micros

if TYPE_CHECKING:
    from ._recorder import Recorder

__all__ = ["NO_TRACE", "OK", "RequestTrace"]

OK = "ok"
# A client that left before its answer ended: not an error code of ours, but an outcome.
CANCELLED = "cancelled"
# The longest model name a span or log record carries (a request may name anything).
_MAX_MODEL_CHARS = 200


class RequestTrace:
    """The figures of one metered request, filled in as it goes.

    Times are ``perf_counter_ns`` readings (0 for a point the request never reached);
    ``started_unix_ns`` anchors them to the wall clock for exported spans.
    """

    __slots__ = (
        "_recorder",
        "authenticated_at",
        "charge_kind",
        "context",
        "cost",
        "finished_at",
        "first_byte_at",
        "hold",
        "last_byte_at",
        "ledger_id",
        "model",
        "model_known",
        "operation",
        "outcome",
        "priced_at",
        "reserved_at",
        "response_model",
        "settled_at",
        "settling_at",
        "started_at",
        "started_unix_ns",
        "status",
        "usage",
        "user",
    )

    def __init__(self, recorder: Recorder | None, operation: str) -> None:
        self._recorder = recorder
        self.operation = operation
        self.started_unix_ns = time.time_ns()
        self.started_at = time.perf_counter_ns()
        self.context: Any = None  # the OpenTelemetry context the request arrived in, when tracing
        self.authenticated_at = self.priced_at = self.reserved_at = 0
        self.first_byte_at = self.last_byte_at = self.settling_at = self.settled_at = self.finished_at = 0
        self.user: str | None = None
        self.model: str | None = None
        self.model_known = False
        self.response_model: str | None = None
        self.ledger_id: str | None = None
        self.hold: Micros = 0
        self.cost: Micros | None = None
        self.charge_kind: str | None = None
        self.usage: Mapping[str, Any] | None = None
        self.status = 0
        self.outcome = OK

    # -- the fixed points, in the order a request meets them --------------------------------

    def authenticated(self, user: str) -> None:
        self.authenticated_at = time.perf_counter_ns()
        self.user = user

    def priced(self, model: str) -> None:
        """The request's model, once the price book knew it (so it may label metrics)."""
        self.priced_at = time.perf_counter_ns()
        self.model = model[:_MAX_MODEL_CHARS]
        self.model_known = True

    def reserved(self, ledger_id: str, hold: Micros) -> None:
        self.reserved_at = time.perf_counter_ns()
        self.ledger_id = ledger_id
        self.hold = hold
        if self._recorder is not None:
            self._recorder.hold_opened(hold)

    def upstream_first_byte(self, status: int) -> None:
        self.first_byte_at = time.perf_counter_ns()
        self.status = status

    def upstream_last_byte(self) -> None:
        self.last_byte_at = time.perf_counter_ns()

    def settling(self) -> None:
        self.settling_at = time.perf_counter_ns()

    def settled(
        self,
        cost: Micros,
        charge_kind: str,
        usage: Mapping[str, Any] | None = None,
        response_model: str | None = None,
    ) -> None:
        """The final ledger row was written: ``cost`` charged, as ``reported``, ``estimated`` or ``none``."""
        self.settled_at = time.perf_counter_ns()
        self.cost = cost
        self.charge_kind = charge_kind
        self.usage = usage
        if response_model is not None:
            # Redacted by ``finished``, after the answer went out (a non-streamed one is settled first).
            self.response_model = response_model[:_MAX_MODEL_CHARS]

    def finished(self, outcome: str) -> None:
        """The request is over: ``ok``, ``cancelled`` or the error code its client got. Exports it."""
        if self.finished_at:
            return
        self.finished_at = time.perf_counter_ns()
        self.outcome = outcome
        if self.response_model is not None and self.response_model != self.model:
            # The upstream's own words: whatever it echoes, no credential goes on to spans or logs.
            # The model the request asked for (the usual answer) is on them already, unredacted
            # as the client sent it; redacting an echo of it (a few microseconds) would hide nothing.
            self.response_model = redact(self.response_model)
        if self._recorder is not None:
            self._recorder.export(self)

    # -- what the exports read --------------------------------------------------------------

    def seconds(self, start: int, end: int) -> float:
        return (end - start) / 1e9

    @property
    def overshoot(self) -> Micros:
        """What was charged past the hold (0 when the hold covered it, as it should)."""
        if self.cost is None or not self.reserved_at:
            return 0
        return max(0, self.cost - self.hold)

    def tokens(self, name: str) -> int | None:
        """A count from the upstream's ``usage`` (``prompt_tokens``, ``completion_tokens``), if it gave one."""
        value = self.usage.get(name) if self.usage is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    def detail_tokens(self, group: str, name: str) -> int | None:
        """A count inside ``usage[group]`` (``completion_tokens_details.reasoning_tokens``…)."""
        details = self.usage.get(group) if self.usage is not None else None
        value = details.get(name) if isinstance(details, Mapping) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _NoTrace(RequestTrace):
    """Telemetry off: every point is an empty call on one shared object."""

    __slots__ = ()

    def authenticated(self, user: str) -> None:
        pass

    def priced(self, model: str) -> None:
        pass

    def reserved(self, ledger_id: str, hold: Micros) -> None:
        pass

    def upstream_first_byte(self, status: int) -> None:
        pass

    def upstream_last_byte(self) -> None:
        pass

    def settling(self) -> None:
        pass

    def settled(
        self,
        cost: Micros,
        charge_kind: str,
        usage: Mapping[str, Any] | None = None,
        response_model: str | None = None,
    ) -> None:
        pass

    def finished(self, outcome: str) -> None:
        pass


NO_TRACE: RequestTrace = _NoTrace(None, "none")
