"""Spans and metrics through the OpenTelemetry API (the ``otel`` extra).

One span per metered request, ``{operation} {model}``, as the GenAI semantic conventions name
it, a child of whatever span the request arrived in (the host's ASGI instrumentation), with
children ``authenticate``, ``price``, ``reserve``, ``upstream`` (a CLIENT span, with a
``first_byte`` event) and ``settle``. Spans are made when the request has finished, with the
times each step really started and ended, so the request itself pays only for clock reads.

Attributes follow the GenAI conventions (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.*``); money, which they have no attribute for, is
``wattfare.cost_micros``, ``wattfare.hold_micros`` and ``wattfare.charge_kind``. The user is a
pseudonym (``enduser.pseudo.id``) unless the app asked for raw ids. No prompt, reply or key is
ever an attribute. Metrics carry no user at all, and a model only once the price book knew it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._config import Telemetry
from ._shared import DURATION_BUCKETS, LAG_BUCKETS, PROVIDER, metric_model, usd
from ._trace import CANCELLED, OK, RequestTrace

if TYPE_CHECKING:
    from ._recorder import Recorder, UserLabel

__all__ = ["OpenTelemetryExport", "open_telemetry"]

_SCOPE = "wattfare_embed"


def open_telemetry(settings: Telemetry, recorder: Recorder) -> OpenTelemetryExport | None:
    """The export, or ``None`` when OpenTelemetry is off, missing, or configured by nobody."""
    if settings.opentelemetry is False:
        return None
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        if settings.opentelemetry:
            raise ConfigurationError(
                "Telemetry(opentelemetry=True) needs the OpenTelemetry API: pip install 'wattfare-embed[otel]'"
            ) from None
        return None
    tracer_provider = settings.tracer_provider or trace.get_tracer_provider()
    meter_provider = settings.meter_provider or metrics.get_meter_provider()
    if settings.opentelemetry is None:
        # Automatic: only what the app configured. Until it sets a provider the API hands out
        # proxies (which would make spans that go nowhere, at full cost).
        if _unset(tracer_provider):
            tracer_provider = None
        if _unset(meter_provider):
            meter_provider = None
        if tracer_provider is None and meter_provider is None:
            return None
    return OpenTelemetryExport(tracer_provider, meter_provider, recorder)


def _unset(provider: Any) -> bool:
    name = type(provider).__name__
    return name in ("ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider")


class OpenTelemetryExport:
    def __init__(self, tracer_provider: Any, meter_provider: Any, recorder: Recorder) -> None:
        from opentelemetry import context, trace

        self._context = context
        self._trace = trace
        self._tracer = tracer_provider.get_tracer(_SCOPE) if tracer_provider is not None else None
        self._metrics = _Instruments(meter_provider.get_meter(_SCOPE), recorder) if meter_provider else None
        self._error = trace.Status(trace.StatusCode.ERROR)
        self._internal, self._client = trace.SpanKind.INTERNAL, trace.SpanKind.CLIENT

    def current_context(self) -> Any:
        return self._context.get_current() if self._tracer is not None else None

    def export(self, trace: RequestTrace, user: UserLabel) -> None:
        if self._tracer is not None:
            self._spans(trace, user)
        if self._metrics is not None:
            self._metrics.record(trace)

    def reconciled(self, lag_seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.lag.record(lag_seconds)

    # -- spans ------------------------------------------------------------------------------

    def _spans(self, trace: RequestTrace, user: UserLabel) -> None:
        tracer = self._tracer
        assert tracer is not None
        failed = trace.outcome not in (OK, CANCELLED)
        name = f"{trace.operation} {trace.model}" if trace.model else trace.operation
        # perf_counter readings to wall-clock nanoseconds, by one offset for the whole request.
        wall = trace.started_unix_ns - trace.started_at
        # Every attribute goes in at the start, where a sampler can read them: the SDK then
        # checks them once, where a later ``set_attributes`` costs a second pass and a lock.
        request = tracer.start_span(
            name,
            context=trace.context,
            kind=self._internal,
            attributes=_request_attributes(trace, user),
            start_time=wall + trace.started_at,
        )
        if not request.is_recording():
            # Not sampled: the SDK made no span object, only a context; the steps would be
            # dropped with it, so they are not made at all.
            return
        if failed:
            request.set_status(self._error)
        inside = self._trace.set_span_in_context(request, trace.context)
        end = trace.finished_at
        # Each step runs from the end of the one before to its own mark; the step a refused
        # request stopped at ends with the request, marked as the failure.
        steps = (
            ("authenticate", trace.started_at, trace.authenticated_at),
            ("price", trace.authenticated_at, trace.priced_at),
            ("reserve", trace.priced_at, trace.reserved_at),
        )
        for step, start, stop in steps:
            if not start:
                break
            self._step(step, inside, wall + start, wall + (stop or end), failed and not stop)
        if trace.reserved_at:
            upstream_end = trace.last_byte_at or trace.settling_at or end
            upstream = tracer.start_span(
                "upstream",
                context=inside,
                kind=self._client,
                attributes=_upstream_attributes(trace),
                start_time=wall + trace.reserved_at,
            )
            if trace.first_byte_at:
                upstream.add_event("first_byte", timestamp=wall + trace.first_byte_at)
            if trace.status >= 400 or (failed and not trace.first_byte_at):
                upstream.set_status(self._error)
            upstream.end(end_time=wall + upstream_end)
            if trace.settling_at:
                settled = trace.settled_at
                self._step("settle", inside, wall + trace.settling_at, wall + (settled or end), not settled)
        request.end(end_time=wall + end)

    def _step(self, name: str, inside: Any, start: int, stop: int, failed: bool) -> None:
        assert self._tracer is not None
        span = self._tracer.start_span(name, context=inside, start_time=start)
        if failed:
            span.set_status(self._error)
        span.end(end_time=stop)


def _request_attributes(trace: RequestTrace, user: UserLabel) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": trace.operation,
        "gen_ai.provider.name": PROVIDER,
        "wattfare.outcome": trace.outcome,
    }
    if trace.model:
        attributes["gen_ai.request.model"] = trace.model
    if trace.response_model:
        attributes["gen_ai.response.model"] = trace.response_model
    for attribute, value in (
        ("gen_ai.usage.input_tokens", trace.tokens("prompt_tokens")),
        ("gen_ai.usage.output_tokens", trace.tokens("completion_tokens")),
        ("gen_ai.usage.reasoning.output_tokens", trace.detail_tokens("completion_tokens_details", "reasoning_tokens")),
        ("gen_ai.usage.cache_read.input_tokens", trace.detail_tokens("prompt_tokens_details", "cached_tokens")),
    ):
        if value is not None:
            attributes[attribute] = value
    if trace.ledger_id:
        attributes["wattfare.ledger_id"] = trace.ledger_id
        attributes["wattfare.hold_micros"] = trace.hold
    if trace.cost is not None:
        attributes["wattfare.cost_micros"] = trace.cost
        attributes["wattfare.charge_kind"] = trace.charge_kind
    if trace.outcome not in (OK, CANCELLED):
        attributes["error.type"] = trace.outcome
    if user is not None:
        attributes[user[0]] = user[1]
    return attributes


def _upstream_attributes(trace: RequestTrace) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.provider.name": PROVIDER}
    if trace.status:
        attributes["http.response.status_code"] = trace.status
    return attributes


class _Totals:
    """Running sums per label set, read by the observable counters when the SDK collects.

    A synchronous counter costs the SDK a few microseconds a measurement (it hashes the
    attributes each time); four of them a request were a third of telemetry's cost. Here a
    request adds to a few floats, and the SDK reads the sums on its own schedule. Collection may
    run on the SDK's thread: it reads a copy of the table, and a float written meanwhile is
    either the old sum or the new one.
    """

    __slots__ = ("input_tokens", "output_tokens", "overshoot", "overshoots", "requests", "spend")

    def __init__(self) -> None:
        self.requests = self.overshoots = self.input_tokens = self.output_tokens = 0
        self.spend = self.overshoot = 0.0


class _Instruments:
    """The metrics, labelled only with bounded values: operation, a priced model, outcome."""

    def __init__(self, meter: Any, recorder: Recorder) -> None:
        from opentelemetry.metrics import Observation

        self._table: dict[tuple[str, str, str], tuple[dict[str, str], _Totals]] = {}

        def observed(read: Any, token_type: str | None = None) -> Any:
            def callback(_options: Any) -> list[Any]:
                observations = []
                for attributes, totals in list(self._table.values()):
                    if token_type is not None:
                        attributes = {**attributes, "gen_ai.token.type": token_type}
                    observations.append(Observation(read(totals), attributes))
                return observations

            return callback

        def holds(_options: Any) -> list[Any]:
            return [Observation(recorder.holds_open)]

        def held(_options: Any) -> list[Any]:
            return [Observation(usd(recorder.held))]

        counter = meter.create_observable_counter
        counter("wattfare.requests", [observed(lambda t: t.requests)], "{request}", "Metered requests, by outcome")
        counter("wattfare.spend", [observed(lambda t: t.spend)], "USD", "Money charged to users' budgets")
        counter("wattfare.overshoot", [observed(lambda t: t.overshoot)], "USD", "Money charged past the request's hold")
        counter("wattfare.overshoots", [observed(lambda t: t.overshoots)], "{request}", "Requests charged past holds")
        counter(
            "wattfare.tokens",
            [observed(lambda t: t.input_tokens, "input"), observed(lambda t: t.output_tokens, "output")],
            "{token}",
            "Tokens the upstream reported, by gen_ai.token.type",
        )
        meter.create_observable_up_down_counter(
            "wattfare.holds.open", [holds], "{hold}", "Requests in flight holding money, in this process"
        )
        meter.create_observable_up_down_counter(
            "wattfare.holds.amount", [held], "USD", "Money held by requests in flight, in this process"
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            "s",
            "Upstream call, from sending to the last byte",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.first_byte = meter.create_histogram(
            "wattfare.upstream.time_to_first_byte",
            "s",
            "Upstream call, from sending to the response's first byte",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.lag = meter.create_histogram(
            "wattfare.reconciliation.lag",
            "s",
            "From an estimated charge to the upstream's own figure replacing it",
            explicit_bucket_boundaries_advisory=LAG_BUCKETS,
        )

    def _row(self, trace: RequestTrace) -> tuple[dict[str, str], _Totals]:
        key = (trace.operation, metric_model(trace), trace.outcome)
        found = self._table.get(key)
        if found is None:
            attributes = {
                "gen_ai.operation.name": key[0],
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": key[1],
                "wattfare.outcome": key[2],
            }
            found = self._table[key] = (attributes, _Totals())
        return found

    def record(self, trace: RequestTrace) -> None:
        attributes, totals = self._row(trace)
        totals.requests += 1
        if trace.cost:
            totals.spend += usd(trace.cost)
        if overshoot := trace.overshoot:
            totals.overshoot += usd(overshoot)
            totals.overshoots += 1
        totals.input_tokens += trace.tokens("prompt_tokens") or 0
        totals.output_tokens += trace.tokens("completion_tokens") or 0
        if trace.reserved_at and trace.first_byte_at:
            self.first_byte.record(trace.seconds(trace.reserved_at, trace.first_byte_at), attributes)
        if trace.reserved_at and trace.last_byte_at:
            self.duration.record(trace.seconds(trace.reserved_at, trace.last_byte_at), attributes)
