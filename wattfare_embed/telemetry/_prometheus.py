"""The same metrics for Prometheus (the ``prometheus`` extra), served at ``GET {mount}/metrics``.

Named in Prometheus convention (``wattfare_requests_total``, ``wattfare_spend_usd_total``,
base units in the name), labelled only with ``operation``, a ``model`` the price book knew and
``outcome``: never a user (a label per user is a time series per user).

Several worker processes: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by the
workers before they start, and any worker's ``/metrics`` answers for all of them (the
``prometheus_client`` multi-process mode; README, "In production").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..money import Micros
from ._shared import DURATION_BUCKETS, LAG_BUCKETS, metric_model, usd
from ._trace import RequestTrace

if TYPE_CHECKING:
    from ._recorder import UserLabel

__all__ = ["PrometheusMetrics"]

_LABELS = ("operation", "model", "outcome")


class PrometheusMetrics:
    def __init__(self) -> None:
        try:
            import prometheus_client
        except ImportError:
            raise ConfigurationError(
                "Telemetry(prometheus=True) needs prometheus_client: pip install 'wattfare-embed[prometheus]'"
            ) from None
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self._client = prometheus_client
        # A registry of our own: the host's metrics stay the host's, and two embeds in one
        # process (tests, two apps) do not collide.
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("wattfare_requests", "Metered requests, by outcome", _LABELS, registry=registry)
        self.spend = Counter("wattfare_spend_usd", "Money charged to users' budgets", _LABELS, registry=registry)
        self.tokens = Counter("wattfare_tokens", "Tokens used", (*_LABELS, "type"), registry=registry)
        self.overshoot = Counter(
            "wattfare_overshoot_usd", "Money charged past the request's hold", _LABELS, registry=registry
        )
        self.overshoots = Counter("wattfare_overshoots", "Requests charged past their hold", _LABELS, registry=registry)
        self.holds = Gauge(
            "wattfare_holds_open", "Requests in flight holding money", registry=registry, multiprocess_mode="livesum"
        )
        self.held = Gauge(
            "wattfare_held_usd", "Money held by requests in flight", registry=registry, multiprocess_mode="livesum"
        )
        self.first_byte = Histogram(
            "wattfare_upstream_time_to_first_byte_seconds",
            "Upstream call, from sending to the response's first byte",
            _LABELS,
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.duration = Histogram(
            "wattfare_upstream_duration_seconds",
            "Upstream call, from sending to the last byte",
            _LABELS,
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.lag = Histogram(
            "wattfare_reconciliation_lag_seconds",
            "From an estimated charge to the upstream's own figure replacing it",
            registry=registry,
            buckets=LAG_BUCKETS,
        )
        # Label lookups take a lock and build a tuple; the children are kept per label set.
        self._children: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def _series(self, trace: RequestTrace) -> tuple[Any, ...]:
        key = (trace.operation, metric_model(trace), trace.outcome)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.requests.labels(*key),
                self.spend.labels(*key),
                self.tokens.labels(*key, "input"),
                self.tokens.labels(*key, "output"),
                self.overshoot.labels(*key),
                self.overshoots.labels(*key),
                self.first_byte.labels(*key),
                self.duration.labels(*key),
            )
        return found

    def export(self, trace: RequestTrace, user: UserLabel) -> None:
        requests, spend, tokens_in, tokens_out, overshoot, overshoots, first_byte, duration = self._series(trace)
        requests.inc()
        if trace.cost:
            spend.inc(usd(trace.cost))
        if (count := trace.tokens("prompt_tokens")) is not None:
            tokens_in.inc(count)
        if (count := trace.tokens("completion_tokens")) is not None:
            tokens_out.inc(count)
        if excess := trace.overshoot:
            overshoot.inc(usd(excess))
            overshoots.inc()
        if trace.reserved_at and trace.first_byte_at:
            first_byte.observe(trace.seconds(trace.reserved_at, trace.first_byte_at))
        if trace.reserved_at and trace.last_byte_at:
            duration.observe(trace.seconds(trace.reserved_at, trace.last_byte_at))

    def hold_changed(self, count: int, amount: Micros) -> None:
        self.holds.inc(count)
        self.held.inc(usd(amount))

    def reconciled(self, lag_seconds: float) -> None:
        self.lag.observe(lag_seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format: every worker's figures in multi-process mode, else this one's."""
        client = self._client
        registry: Any = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = client.CollectorRegistry()
            collector: Any = multiprocess.MultiProcessCollector  # untyped upstream
            collector(registry)
        return client.generate_latest(registry), client.CONTENT_TYPE_LATEST
