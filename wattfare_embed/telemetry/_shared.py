"""What the OpenTelemetry and Prometheus exports share: bucket bounds, labels, dollars."""

from __future__ import annotations

from ..money import MICROS_PER_USD, Micros
from ._trace import RequestTrace

__all__ = ["DURATION_BUCKETS", "LAG_BUCKETS", "PROVIDER", "metric_model", "usd"]

PROVIDER = "openrouter"  # not a well-known gen_ai.provider.name; custom values are allowed
# The GenAI conventions' advice for gen_ai.client.operation.duration, in seconds.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
LAG_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0)


def usd(micros: Micros) -> float:
    """Dollars for a metric: metrics are float64 by nature (spans and the ledger keep exact integers)."""
    return micros / MICROS_PER_USD


def metric_model(trace: RequestTrace) -> str:
    """The model as a label: only a name the price book knew, so a client cannot mint series."""
    return trace.model if trace.model_known and trace.model else "unknown"
