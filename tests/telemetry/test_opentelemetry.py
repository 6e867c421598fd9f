"""Spans and metrics of metered requests, read from OpenTelemetry's in-memory exporters."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from tests.proxy.conftest import MINI, running_proxy
from tests.telemetry.conftest import Otel
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.money import micros_from_usd
from wattfare_embed.telemetry import NO_TRACE, REQUEST_LOGGER, Telemetry
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter, Fault

PROMPT = "A secret prompt the user typed"


def _request_span(spans: list[ReadableSpan]) -> ReadableSpan:
    [request] = [span for span in spans if span.parent is None]
    return request


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    assert parent.context is not None
    return {span.name: span for span in spans if span.parent and span.parent.span_id == parent.context.span_id}


def _every_value(spans: list[ReadableSpan]) -> list[str]:
    values: list[str] = []
    for span in spans:
        values.append(span.name)
        values.extend(str(value) for value in (span.attributes or {}).values())
        for event in span.events:
            values.extend(str(value) for value in (event.attributes or {}).values())
    return values


async def test_a_metered_stream_is_one_span_with_a_child_per_step(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    async with running_proxy(keys, sqlite_url, telemetry=otel.telemetry()) as proxy:
        funding = await proxy.connect(user_id)
        messages = [{"role": "user", "content": PROMPT}]
        response, _raw = await proxy.stream_bytes(user_id, messages=messages, max_tokens=40)
        assert response.status_code == 200
        [row] = await proxy.settled(user_id, 1)
        generation = proxy.generation(row.generation_id)

    spans = otel.finished()
    request = _request_span(spans)
    assert request.name == f"chat {MINI}"
    assert request.kind is SpanKind.INTERNAL
    attributes = dict(request.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openrouter"
    assert attributes["gen_ai.request.model"] == MINI
    assert attributes["gen_ai.response.model"] == generation.model
    assert attributes["gen_ai.usage.input_tokens"] == generation.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == generation.completion_tokens
    # Money is exact, and is what the ledger holds.
    assert attributes["wattfare.cost_micros"] == row.cost
    assert attributes["wattfare.hold_micros"] == row.reserved
    assert attributes["wattfare.charge_kind"] == "reported"
    assert attributes["wattfare.ledger_id"] == row.id
    assert attributes["wattfare.outcome"] == "ok"
    assert "error.type" not in attributes
    assert request.status.status_code is StatusCode.UNSET

    steps = _children(spans, request)
    assert list(steps) == ["authenticate", "price", "reserve", "upstream", "settle"]
    assert request.start_time is not None and request.end_time is not None
    previous_end = request.start_time
    for step in steps.values():
        assert step.start_time is not None and step.end_time is not None
        # In order, one after the other, inside the request.
        assert previous_end <= step.start_time <= step.end_time <= request.end_time
        previous_end = step.end_time
    upstream = steps["upstream"]
    assert upstream.kind is SpanKind.CLIENT
    assert (upstream.attributes or {})["http.response.status_code"] == 200
    [first_byte] = upstream.events
    assert first_byte.name == "first_byte"
    assert upstream.start_time is not None and upstream.end_time is not None
    assert upstream.start_time <= first_byte.timestamp <= upstream.end_time

    # Never the prompt, never a key, never the raw user id: a pseudonym, stable per user.
    values = _every_value(spans)
    assert not any(PROMPT in value or "sk-" in value or "sk_" in value for value in values)
    assert not any(user_id in value for value in values)
    assert funding.secret not in " ".join(values)
    pseudonym = attributes["enduser.pseudo.id"]
    assert isinstance(pseudonym, str) and len(pseudonym) >= 16 and "enduser.id" not in attributes


async def test_the_request_span_joins_the_trace_the_request_arrived_in(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    """A server-side call (``wf.user(uid).openai()``) made inside the app's own span is its child."""
    async with running_proxy(keys, sqlite_url, telemetry=otel.telemetry()) as proxy:
        await proxy.connect(user_id)
        tracer = otel.tracer_provider.get_tracer("the app")
        with tracer.start_as_current_span("app handles a chat message") as app_span:
            client = proxy.wf.user(user_id).openai()
            reply = await client.chat.completions.create(model=MINI, messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content
        await proxy.settled(user_id, 1)
    request = next(span for span in otel.finished() if span.name == f"chat {MINI}")
    assert request.parent is not None
    assert request.parent.span_id == app_span.get_span_context().span_id
    assert request.context is not None and request.context.trace_id == app_span.get_span_context().trace_id


async def test_a_refused_request_ends_at_the_step_that_refused_it(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    async with running_proxy(keys, sqlite_url, telemetry=otel.telemetry()) as proxy:
        await proxy.connect(user_id, monthly_usd="0.000001")
        refused = await proxy.chat(user_id)
        assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
        wrong_key = {"authorization": "Bearer not-a-key", "x-wattfare-user": user_id}
        unauthenticated = await proxy.http.post("/api/v1/chat/completions", json=proxy.chat_body(), headers=wrong_key)
        assert unauthenticated.status_code == 401

    spans = otel.finished()
    requests = [span for span in spans if span.parent is None]
    assert len(requests) == 2
    budget, anonymous = sorted(requests, key=lambda span: span.start_time or 0)
    assert (budget.attributes or {})["error.type"] == "budget_exceeded"
    assert budget.status.status_code is StatusCode.ERROR
    steps = _children(spans, budget)
    assert list(steps) == ["authenticate", "price", "reserve"]  # nothing went upstream
    assert steps["reserve"].status.status_code is StatusCode.ERROR
    assert steps["price"].status.status_code is StatusCode.UNSET
    assert "wattfare.cost_micros" not in (budget.attributes or {})
    assert anonymous.name == "chat"  # refused before the body was read: no model to name
    assert list(_children(spans, anonymous)) == ["authenticate"]
    assert _children(spans, anonymous)["authenticate"].status.status_code is StatusCode.ERROR


async def test_an_unsampled_request_makes_no_span_but_still_counts(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    unsampled.add_span_processor(SimpleSpanProcessor(otel.spans))
    telemetry = Telemetry(tracer_provider=unsampled, meter_provider=otel.meter_provider)
    async with running_proxy(keys, sqlite_url, telemetry=telemetry) as proxy:
        await proxy.connect(user_id)
        assert (await proxy.chat(user_id)).status_code == 200
        await proxy.settled(user_id, 1)
    assert otel.finished() == []
    assert _sum(otel, "wattfare.requests", **{"wattfare.outcome": "ok"}) == 1


class _DropsAndCounts(Sampler):
    """Drops every span, and counts the spans it was asked about and what they carried."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> SamplingResult:
        attributes = kwargs.get("attributes") or (args[1] if len(args) > 1 else None) or {}
        self.asked.append((name, dict(attributes)))
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "drops and counts"


async def test_sampling_is_decided_once_for_the_request_span_and_a_dropped_one_makes_no_steps(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    """A dropped request span costs one sampler call: none of its five steps is started."""
    sampler = _DropsAndCounts()
    dropping = TracerProvider(sampler=sampler)
    dropping.add_span_processor(SimpleSpanProcessor(otel.spans))
    async with running_proxy(keys, sqlite_url, telemetry=Telemetry(tracer_provider=dropping)) as proxy:
        await proxy.connect(user_id)
        assert (await proxy.chat(user_id)).status_code == 200
        await proxy.settled(user_id, 1)
    assert [name for name, _ in sampler.asked] == [f"chat {MINI}"]
    [(_, attributes)] = sampler.asked
    # The sampler sees what the conventions give a span at its start.
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.request.model"] == MINI
    assert otel.finished() == []
    dropping.shutdown()


async def test_raw_user_ids_only_when_the_app_asks_for_them(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    async with running_proxy(keys, sqlite_url, telemetry=otel.telemetry(user_ids="raw")) as proxy:
        await proxy.connect(user_id)
        assert (await proxy.chat(user_id)).status_code == 200
        await proxy.settled(user_id, 1)
    attributes = _request_span(otel.finished()).attributes or {}
    assert attributes["enduser.id"] == user_id and "enduser.pseudo.id" not in attributes


def _sum(otel: Otel, name: str, **where: Any) -> float:
    return sum(
        point.value for point in otel.points(name) if all(point.attributes.get(k) == v for k, v in where.items())
    )


async def test_metrics_count_requests_by_outcome_with_spend_holds_and_latency(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    fake = FakeOpenRouter(reply_text="one two three four five six seven eight", chunk_delay=0.05)
    async with running_proxy(keys, sqlite_url, fake=fake, telemetry=otel.telemetry()) as proxy:
        await proxy.connect(user_id, monthly_usd="0.01")
        assert (await proxy.chat(user_id)).status_code == 200
        response, _raw = await proxy.stream_bytes(user_id)
        assert response.status_code == 200
        assert (await proxy.chat(user_id, model="no/such-model")).status_code == 400
        rows = await proxy.settled(user_id, 2)
        # A stream in flight holds money: the gauge says so while it runs, and drops after.
        async with proxy.stream(user_id) as open_stream:
            chunks = open_stream.aiter_raw()
            await anext(chunks)
            assert _sum(otel, "wattfare.holds.open") == 1
            [held] = [row for row in await proxy.ledger(user_id) if row.state == "reserved"]
            assert _sum(otel, "wattfare.holds.amount") == held.reserved / 1_000_000
            async for _chunk in chunks:
                pass
        rows = await proxy.settled(user_id, 3)

    assert _sum(otel, "wattfare.requests", **{"wattfare.outcome": "ok"}) == 3
    assert _sum(otel, "wattfare.requests", **{"wattfare.outcome": "invalid_request"}) == 1
    # An unknown model is refused before pricing: it never becomes a label of its own.
    assert {point.attributes["gen_ai.request.model"] for point in otel.points("wattfare.requests")} == {
        MINI,
        "unknown",
    }
    spent = sum(row.cost or 0 for row in rows)
    assert abs(_sum(otel, "wattfare.spend") - spent / 1_000_000) < 1e-12
    assert _sum(otel, "wattfare.holds.open") == 0 and _sum(otel, "wattfare.holds.amount") == 0
    durations = otel.points("gen_ai.client.operation.duration")
    assert sum(point.count for point in durations) == 3
    assert all(point.sum > 0 for point in durations)
    assert sum(point.count for point in otel.points("wattfare.upstream.time_to_first_byte")) == 3
    tokens = otel.points("wattfare.tokens")
    assert {point.attributes["gen_ai.token.type"] for point in tokens} == {"input", "output"}
    assert _sum(otel, "wattfare.tokens", **{"gen_ai.token.type": "output"}) > 0
    assert _sum(otel, "wattfare.overshoot") == 0 and _sum(otel, "wattfare.overshoots") == 0
    # No metric carries a user.
    for name in ("wattfare.requests", "wattfare.spend", "gen_ai.client.operation.duration"):
        for point in otel.points(name):
            assert user_id not in str(point.attributes) and not any("user" in key for key in point.attributes)


async def test_a_charge_past_its_hold_is_counted_as_overshoot(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    async with running_proxy(keys, sqlite_url, telemetry=otel.telemetry()) as proxy:
        await proxy.connect(user_id)
        proxy.fake.faults.add(Fault(cost_override=Decimal("0.5")))  # the upstream bills far more than held
        assert (await proxy.chat(user_id, max_tokens=5)).status_code == 200
        [row] = await proxy.settled(user_id, 1)
    assert row.cost == micros_from_usd("0.5") and row.cost > row.reserved
    assert _sum(otel, "wattfare.overshoots") == 1
    assert abs(_sum(otel, "wattfare.overshoot") - (row.cost - row.reserved) / 1_000_000) < 1e-12


async def test_the_reconciliation_lag_is_measured_from_the_estimate_to_the_upstreams_figure(
    keys: AppKeys, sqlite_url: str, user_id: str, otel: Otel
) -> None:
    async with running_proxy(keys, sqlite_url, telemetry=otel.telemetry()) as proxy:
        await proxy.connect(user_id)
        proxy.fake.faults.add(Fault(no_usage=True))  # no usage in the stream: charged as an estimate
        response, _raw = await proxy.stream_bytes(user_id)
        assert response.status_code == 200
        answered = time.monotonic()
        [row] = await proxy.settled(user_id, 1, reconciled=True)
        reconciled_within = time.monotonic() - answered
    assert row.cost_source == "reported"
    [lag] = otel.points("wattfare.reconciliation.lag")
    # From the charge to the upstream's figure; the ledger keeps whole seconds, hence the second.
    assert lag.count == 1 and 0 < lag.sum <= reconciled_within + 1.0


async def test_without_a_configured_provider_opentelemetry_costs_nothing(keys: AppKeys, sqlite_url: str) -> None:
    """The global providers are OpenTelemetry's proxies until an app sets them: nothing is made."""
    request_log = logging.getLogger(REQUEST_LOGGER)
    level = request_log.level
    request_log.setLevel(logging.WARNING)  # no one reads the request log either
    try:
        wf = Wattfare(secret_key=keys.secret_key, publishable_key=keys.publishable_key, database_url=sqlite_url)
        async with wf:
            assert wf.recorder.begin("chat") is NO_TRACE
        insisted = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=sqlite_url,
            telemetry=Telemetry(opentelemetry=True),  # the API's own no-op providers: traced, to nowhere
        )
        async with insisted:
            assert insisted.recorder.begin("chat") is not NO_TRACE
    finally:
        request_log.setLevel(level)
