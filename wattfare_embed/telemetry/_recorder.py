"""``Recorder``: hands the proxy a trace per request, and each finished trace to the exports."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Protocol

from ..crypto import derive_key
from ..money import Micros
from ._config import Telemetry
from ._logs import RequestLog
from ._trace import NO_TRACE, RequestTrace

if TYPE_CHECKING:
    from ._otel import OpenTelemetryExport
    from ._prometheus import PrometheusMetrics

__all__ = ["Recorder", "UserLabel"]

logger = logging.getLogger("wattfare_embed")

# How a user is named on a span or a log record: (attribute, value), or None.
UserLabel = tuple[str, str] | None
# Pseudonyms kept per process, so a user's next request does not hash again.
_MAX_PSEUDONYMS = 4096


class Export(Protocol):
    def export(self, trace: RequestTrace, user: UserLabel) -> None: ...

    def reconciled(self, lag_seconds: float) -> None: ...


class Recorder:
    """The proxy's one telemetry collaborator: ``begin`` a trace per request, ``reconciled`` per
    reconciliation. What it exports to is settled at start-up (``start``), once the app had its
    chance to configure OpenTelemetry; until then, and whenever nothing listens, ``begin``
    returns ``NO_TRACE``.
    """

    def __init__(self, settings: Telemetry, secret_key: str) -> None:
        self.settings = settings
        self._user_key = derive_key(secret_key, b"wattfare telemetry user ids v1")
        self._log = RequestLog() if settings.request_logs else None
        self._otel: OpenTelemetryExport | None = None
        self._exports: tuple[Export, ...] = ()
        # Whether some export wants every request (OpenTelemetry, Prometheus), or only the log
        # does, and then only while its logger is enabled for INFO.
        self._every_request = False
        self._failed: set[type[Export]] = set()
        self._pseudonyms: dict[str, UserLabel] = {}
        self.holds_open = 0
        self.held: Micros = 0
        self.prometheus: PrometheusMetrics | None = None
        if settings.prometheus:
            from ._prometheus import PrometheusMetrics

            self.prometheus = PrometheusMetrics()

    def start(self) -> None:
        """Decide what to export to (called at the embed's start-up; idempotent)."""
        from ._otel import open_telemetry

        self._otel = open_telemetry(self.settings, self)
        exports: list[Export] = [export for export in (self._otel, self.prometheus) if export is not None]
        self._every_request = bool(exports)
        if self._log is not None:
            exports.append(self._log)
        self._exports = tuple(exports)

    def begin(self, operation: str) -> RequestTrace:
        """A trace for one request (``chat``, ``embeddings``); ``NO_TRACE`` when nothing would read it."""
        if not self._every_request and (self._log is None or not self._log.enabled()):
            return NO_TRACE
        trace = RequestTrace(self, operation)
        if self._otel is not None:
            trace.context = self._otel.current_context()
        return trace

    def hold_opened(self, amount: Micros) -> None:
        self.holds_open += 1
        self.held += amount
        if self.prometheus is not None:
            self.prometheus.hold_changed(1, amount)

    def export(self, trace: RequestTrace) -> None:
        """Called once per trace, by ``finished``. An export that fails never fails the request."""
        if trace.reserved_at:
            self.holds_open -= 1
            self.held -= trace.hold
            if self.prometheus is not None:
                self.prometheus.hold_changed(-1, -trace.hold)
        user = self._user_label(trace.user)
        for export in self._exports:
            try:
                export.export(trace, user)
            except Exception:
                self._report_failure(export)

    def reconciled(self, lag_seconds: float) -> None:
        """An estimated charge was replaced by the upstream's figure ``lag_seconds`` after settling."""
        for export in self._exports:
            try:
                export.reconciled(lag_seconds)
            except Exception:
                self._report_failure(export)

    def _report_failure(self, export: Export) -> None:
        # Once per kind of export: a broken exporter must not flood the log a request at a time.
        if type(export) not in self._failed:
            self._failed.add(type(export))
            logger.exception("exporting telemetry to %s failed; later failures are not logged", type(export).__name__)

    def _user_label(self, user: str | None) -> UserLabel:
        mode = self.settings.user_ids
        if user is None or mode == "none":
            return None
        if mode == "raw":
            return ("enduser.id", user)
        label = self._pseudonyms.get(user)
        if label is None:
            if len(self._pseudonyms) >= _MAX_PSEUDONYMS:
                self._pseudonyms.clear()  # a bound, not a policy: the next requests refill it
            # Keyed BLAKE2b is a MAC (RFC 7693), several times cheaper than HMAC-SHA256 for an id.
            digest = hashlib.blake2b(user.encode(), key=self._user_key, digest_size=12).hexdigest()
            label = self._pseudonyms[user] = ("enduser.pseudo.id", digest)
        return label
