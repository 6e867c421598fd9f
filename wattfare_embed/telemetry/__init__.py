"""Telemetry: OpenTelemetry spans and metrics, Prometheus metrics, one log record per request.

The proxy sees one collaborator, the ``Recorder``, and one ``RequestTrace`` per request; what
the traces are exported to is configured with ``Telemetry``.
"""

from ._config import Telemetry, UserIds
from ._logs import REQUEST_LOGGER
from ._recorder import Recorder
from ._trace import CANCELLED, NO_TRACE, OK, RequestTrace

__all__ = ["CANCELLED", "NO_TRACE", "OK", "REQUEST_LOGGER", "Recorder", "RequestTrace", "Telemetry", "UserIds"]
