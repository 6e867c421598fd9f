"""One log record per metered request, on the ``wattfare_embed.requests`` logger.

The message reads on its own; the figures are also the record's attributes (``extra``), so a
JSON formatter (python-json-logger, structlog's ``ProcessorFormatter``, a cloud agent) emits
them as fields. Money is in integer micro-dollars, times in milliseconds. The record names the
user as ``Telemetry(user_ids=…)`` says (a pseudonym by default), and never carries a prompt,
a reply or a key (and, like every logger of the package, it passes the redaction filter).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..money import usd_text
from ._trace import RequestTrace

if TYPE_CHECKING:
    from ._recorder import UserLabel

__all__ = ["REQUEST_LOGGER", "RequestLog"]

REQUEST_LOGGER = "wattfare_embed.requests"


def _ms(start: int, end: int) -> float | None:
    return round((end - start) / 1e6, 3) if start and end else None


class RequestLog:
    """Writes the record; costs nothing while its logger is not enabled for INFO."""

    def __init__(self) -> None:
        # Named here in full: the redaction filter is installed on every logger the code names.
        self._logger = logging.getLogger("wattfare_embed.requests")

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def export(self, trace: RequestTrace, user: UserLabel) -> None:
        if not self.enabled():
            return
        fields: dict[str, Any] = {
            "ledger_id": trace.ledger_id,
            "outcome": trace.outcome,
            "operation": trace.operation,
            "model": trace.model,
            "response_model": trace.response_model,
            "cost_micros": trace.cost,
            "hold_micros": trace.hold if trace.reserved_at else None,
            "charge_kind": trace.charge_kind,
            "input_tokens": trace.tokens("prompt_tokens"),
            "output_tokens": trace.tokens("completion_tokens"),
            "upstream_status": trace.status or None,
            "latency_ms": _ms(trace.started_at, trace.finished_at),
            "first_byte_ms": _ms(trace.reserved_at, trace.first_byte_at),
            "upstream_ms": _ms(trace.reserved_at, trace.last_byte_at),
            "user_id": user[1] if user is not None else None,
        }
        charged = "nothing charged"
        if trace.cost is not None:
            charged = f"${usd_text(trace.cost)} charged ({trace.charge_kind})"
        self._logger.info(
            "%s %s: %s in %.1f ms, %s, $%s held, ledger %s",
            trace.operation,
            trace.model or "-",
            trace.outcome,
            fields["latency_ms"] or 0.0,
            charged,
            usd_text(trace.hold),
            trace.ledger_id or "-",
            extra=fields,
        )

    def reconciled(self, lag_seconds: float) -> None:
        pass  # the reconciliation is in the ledger; a record per request is enough
