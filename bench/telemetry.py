"""What telemetry costs a metered request: each part of it on its own, in one run.

    python -m bench.telemetry [--rounds 7] [--requests 1000] [--quick]

One proxy process per mode below serves the same non-streaming requests against the fake
upstream, 8 at a time, on SQLite. Each proxy's CPU time is read from /proc around every round,
so the figure is the work a request costs the proxy, not a latency the load generator and the
upstream share two cores with; the order of the proxies rotates every round, so load from
elsewhere moves all of them alike. Every figure is shown against the proxy with telemetry off
in the same run. ``make bench BENCH_ARGS=--telemetry`` puts the embed with everything on beside
the other measures of ``make bench``.

Latency is measured twice: the median of those requests 8 at a time (where a request also waits
for the work of the others, telemetry's included), and of requests sent one at a time with a
pause between them, so each meets an idle proxy: that is what telemetry adds to a request's own
path, from its first byte in to its last byte out. The telemetry calls are also timed alone, in a
loop, split into what a request runs before its last byte goes out and what runs after it (the
spans, metrics and log record, made from the figures noted on the way).

The spans are also set beside their floor: the same six spans, with the same attributes, made
straight through the SDK's tracer with nothing of the embed around them, timed in the same loop,
and the objects a request leaves queued in the batch span processor (what the garbage collector
walks, and promotes to its oldest generation, until the batch is exported). Each proxy counts the
garbage collections it runs, by generation, and the time they take (``gc.callbacks``).

Two proxies run with the collector's first-generation threshold raised from 700 to 10 000 (the
``-gc`` modes, off and everything on): past what the batch span processor holds between two
exports, so the spans it queues are freed by then and no longer pulled into collections.

"Everything on" is what an app would set up: OpenTelemetry's SDK with a batch span processor
(exporting nowhere) and its metrics, Prometheus metrics, and the request log written by a JSON
formatter (to /dev/null).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from wattfare_embed import Telemetry, new_key_pair
from wattfare_embed.telemetry import REQUEST_LOGGER, Recorder

from . import machine, procfs
from .load import Endpoint, chat_body, latencies, timed_call
from .servers import Fleet, connect_users

__all__ = ["MODES", "telemetry_for"]

# What each proxy reports: one part at a time, then everything together.
MODES = {
    "off": "telemetry off",
    "logs": "the request log (JSON formatter)",
    "prometheus": "Prometheus metrics",
    "otel-metrics": "OpenTelemetry metrics",
    "otel-traces": "OpenTelemetry spans, every request",
    "all": "everything, every request traced",
    "all-sampled": "everything, 1 request in 10 traced",
    # The collector's first generation past what the batch span processor holds between exports
    # (512 spans, about 85 requests of 70 objects): the queued spans are freed before it runs.
    "off-gc": "telemetry off, gen-0 threshold 10000",
    "all-gc": "everything, gen-0 threshold 10000",
}
_GEN0_THRESHOLD = 10_000
USER = "bench-user"
_LOG_FIELDS = ("ledger_id", "outcome", "model", "cost_micros", "hold_micros", "latency_ms")


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {name: getattr(record, name, None) for name in _LOG_FIELDS}
        return json.dumps({"message": record.getMessage(), **fields})


def _tracer_provider(traced: float) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(traced)))
    provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=65536))
    return provider


def _meter_provider() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return MeterProvider(metric_readers=[InMemoryMetricReader()])


def _log_to_nowhere() -> None:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    handler.setFormatter(_JsonLines())
    request_log = logging.getLogger(REQUEST_LOGGER)
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)


# Set by the bench for its proxies: where each writes the garbage collections it ran.
_GC_DIR = "WATTFARE_BENCH_GC_DIR"


def _count_collections(path: Path) -> None:
    """Count this process's collections by generation, and their time, into ``path`` (at most
    every 0.2 s: uvicorn ends on a signal, past any ``atexit``)."""
    counts, nanoseconds, started, written = [0, 0, 0], [0, 0, 0], [0], [0]

    def callback(phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            started[0] = now
            return
        counts[info["generation"]] += 1
        nanoseconds[info["generation"]] += now - started[0]
        if now - written[0] > 200_000_000:
            written[0] = now
            path.write_text(json.dumps({"counts": counts, "nanoseconds": nanoseconds}))

    gc.callbacks.append(callback)


def telemetry_for(mode: str) -> Telemetry:
    """The ``Telemetry`` of a mode, with the SDK providers and the log handler it needs."""
    if os.environ.get(_GC_DIR):
        _count_collections(Path(os.environ[_GC_DIR]) / f"gc-{mode}.json")
    if mode.endswith("-gc"):
        gc.set_threshold(_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        mode = mode.removesuffix("-gc")
    traced = mode in ("otel-traces", "all", "all-sampled")
    measured = mode in ("otel-metrics", "all", "all-sampled")
    logs = mode in ("logs", "all", "all-sampled")
    if logs:
        _log_to_nowhere()
    return Telemetry(
        opentelemetry=traced or measured,
        tracer_provider=_tracer_provider(0.1 if mode == "all-sampled" else 1.0) if traced else None,
        meter_provider=_meter_provider() if measured else None,
        prometheus=mode in ("prometheus", "all", "all-sampled"),
        request_logs=logs,
    )


# The pause between requests sent one at a time: longer than any request's telemetry takes.
_PAUSE_SECONDS = 0.005


_USAGE = {"prompt_tokens": 12, "completion_tokens": 8, "cost": 0.000012}


def _answered(recorder: Recorder) -> Any:
    """One request's telemetry calls up to its answer's last byte; the caller finishes the trace."""
    trace = recorder.begin("chat")
    trace.authenticated("user-1")
    trace.priced("openai/gpt-4o-mini")
    trace.reserved("req_0123456789abcdef01234567", 960)
    trace.upstream_first_byte(200)
    trace.upstream_last_byte()
    trace.settling()
    trace.settled(12, "reported", _USAGE, "openai/gpt-4o-mini")
    return trace


def _calls_alone(count: int) -> tuple[float, float, float]:
    """Microseconds the telemetry calls of one request take in a loop: off; and with everything
    on, what runs before the answer's last byte (a non-streamed answer is settled before it goes
    out) and what runs after it (``finished``, which makes the spans, metrics and log record)."""
    figures = []
    for mode in ("off", "all"):
        recorder = Recorder(telemetry_for(mode), "sk_test_bench_" + "x" * 43)
        recorder.start()
        for timed in (False, True):  # the first pass warms up
            before = after = 0
            for _ in range(count):
                start = time.perf_counter_ns()
                trace = _answered(recorder)
                answered = time.perf_counter_ns()
                trace.finished("ok")
                before += answered - start
                after += time.perf_counter_ns() - answered
            if timed:
                figures.append((before / count / 1e3, after / count / 1e3))
    return figures[0][0] + figures[0][1], figures[1][0], figures[1][1]


_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openrouter",
    "wattfare.outcome": "ok",
    "gen_ai.request.model": "openai/gpt-4o-mini",
    "gen_ai.response.model": "openai/gpt-4o-mini",
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 8,
    "wattfare.ledger_id": "req_0123456789abcdef01234567",
    "wattfare.hold_micros": 960,
    "wattfare.cost_micros": 12,
    "wattfare.charge_kind": "reported",
    "enduser.pseudo.id": "0123456789abcdef01234567",
}


def _spans_alone(count: int) -> dict[str, tuple[float, float]]:
    """(CPU µs a request, tracked objects it leaves queued) for the embed's spans (a request
    traced, nothing else on) and for their floor: the same six spans, attributes and event made
    straight through the SDK, with the two histogram measurements the metrics make. In turns of a
    few hundred requests, garbage collections paused (they are the objects' cost)."""
    from opentelemetry import trace as api

    provider, meters = _tracer_provider(1.0), _meter_provider()
    recorder = Recorder(
        Telemetry(opentelemetry=True, tracer_provider=provider, meter_provider=meters, request_logs=False),
        "sk_test_bench_" + "x" * 43,
    )
    recorder.start()
    tracer, meter = provider.get_tracer("floor"), meters.get_meter("floor")
    durations = [meter.create_histogram(name) for name in ("floor.first_byte", "floor.duration")]
    labels = {key: _ATTRIBUTES[key] for key in list(_ATTRIBUTES)[:4]}
    upstream = {"gen_ai.provider.name": "openrouter", "http.response.status_code": 200}

    def embed() -> None:
        _answered(recorder).finished("ok")

    def floor() -> None:
        at = time.time_ns()
        request = tracer.start_span("chat openai/gpt-4o-mini", attributes=_ATTRIBUTES, start_time=at)
        inside = api.set_span_in_context(request)
        for step in ("authenticate", "price", "reserve"):
            tracer.start_span(step, context=inside, start_time=at).end(end_time=at)
        call = tracer.start_span(
            "upstream", context=inside, kind=api.SpanKind.CLIENT, attributes=upstream, start_time=at
        )
        call.add_event("first_byte", timestamp=at)
        call.end(end_time=at)
        tracer.start_span("settle", context=inside, start_time=at).end(end_time=at)
        request.end(end_time=at)
        for histogram in durations:
            histogram.record(0.25, labels)

    made = {"embed": embed, "floor": floor}
    cpu = {name: 0 for name in made}
    queued = {}
    flush = provider.force_flush
    for name, make in made.items():
        flush()
        gc.collect()
        gc.disable()
        before = len(gc.get_objects())
        for _ in range(50):
            make()
        queued[name] = (len(gc.get_objects()) - before) / 50
        gc.enable()
    # Collections paused while timed: one of the oldest generation takes a hundred milliseconds
    # here and lands on whichever turn is running, so they are counted apart (objects queued).
    turn = 250
    for _ in range(max(count // turn, 1)):
        for name, make in made.items():
            flush()
            gc.collect()
            gc.disable()
            start = time.thread_time_ns()
            for _ in range(turn):
                make()
            cpu[name] += time.thread_time_ns() - start
            gc.enable()
    turns = max(count // turn, 1) * turn
    provider.shutdown()
    return {name: (cpu[name] / turns / 1e3, queued[name]) for name in made}


def _collections_so_far(workdir: Path) -> dict[str, list[int]]:
    """Each proxy's collections by generation, then the nanoseconds they took (0 where none yet)."""
    figures = {}
    for mode in MODES:
        try:
            read = json.loads((workdir / f"gc-{mode}.json").read_text())
            figures[mode] = [*read["counts"], sum(read["nanoseconds"])]
        except (OSError, ValueError, KeyError):
            figures[mode] = [0, 0, 0, 0]
    return figures


def _collections(before: list[int], after: list[int], requests: int) -> str:
    gen0, gen1, gen2, spent = (later - earlier for earlier, later in zip(before, after, strict=True))
    per_1000 = f"{gen0 / requests * 1000:.0f}/{gen1 / requests * 1000:.1f}/{gen2 / requests * 1000:.2f}"
    return f"{per_1000}, {spent / requests / 1e3:.0f} µs"


async def _one_at_a_time(calls: dict[str, Any], count: int, alone: dict[str, list[float]]) -> None:
    """Latencies of requests that each meet an idle proxy (the previous one's work is done), the
    proxies taken in turn request by request, so load from elsewhere meets them all alike."""
    for _ in range(count):
        for mode, call in calls.items():
            await asyncio.sleep(_PAUSE_SECONDS)
            alone[mode].append(await call())


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    keys = new_key_pair()
    fleet = Fleet(workdir)
    os.environ[_GC_DIR] = str(workdir)
    started, load_before = time.monotonic(), machine.load_average()
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    p50: dict[str, list[float]] = {mode: [] for mode in MODES}
    alone: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        upstream = fleet.fake_upstream("fake upstream")
        proxies = {}
        for mode in MODES:
            database_url = f"sqlite+aiosqlite:///{workdir / f'{mode}.db'}"
            await connect_users(database_url, keys, {USER: None})
            proxies[mode] = fleet.proxy(
                f"embed {mode}", database_url=database_url, upstream=upstream, keys=keys, telemetry=mode
            )
        await fleet.wait_ready(upstream, "/api/v1/models")
        headers = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": USER}
        endpoints = {}
        for mode, proxy in proxies.items():
            await fleet.wait_ready(proxy, "/wattfare/api/v1/models")
            endpoints[mode] = Endpoint(proxy.base + "/wattfare/api/v1/chat/completions", headers)
        proxy_pids = [proxy.pid for proxy in proxies.values()]
        pinning = procfs.pin_apart([upstream.pid], proxy_pids) if args.pin else "not pinned"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            def call(mode: str) -> Any:
                endpoint = endpoints[mode]
                body = chat_body(endpoint, stream=False)
                return lambda: timed_call(session, endpoint, body)

            for mode in MODES:
                await latencies(call(mode), args.requests // 4, concurrency=8)
            await asyncio.sleep(0.3)  # each proxy's count of collections is written every 0.2 s
            collected = _collections_so_far(workdir)
            names = list(MODES)
            for index in range(args.rounds):
                for mode in names[index % len(names) :] + names[: index % len(names)]:
                    pid = proxies[mode].pid
                    before = procfs.cpu_seconds([pid])
                    timings = await latencies(call(mode), args.requests, concurrency=8)
                    cpu[mode].append((procfs.cpu_seconds([pid]) - before) / args.requests * 1e6)
                    p50[mode].append(statistics.median(timings) * 1e3)
                await _one_at_a_time({mode: call(mode) for mode in names}, max(args.requests // 10, 4), alone)
            await asyncio.sleep(0.3)
            collected_after = _collections_so_far(workdir)
    finally:
        fleet.stop()
        del os.environ[_GC_DIR]
    served = args.rounds * (args.requests + max(args.requests // 10, 4))
    calls_off, calls_before, calls_after = _calls_alone(args.requests * 5)
    spans = _spans_alone(args.requests * 5)
    off = statistics.median(cpu["off"])
    latency_off, alone_off = statistics.median(p50["off"]), statistics.median(alone["off"]) * 1e3
    print(f"\nwattfare_embed telemetry cost, {time.monotonic() - started:.0f} s")
    for line in machine.describe():
        print("  " + line)
    print(f"  load average (1/5/15 min): {load_before} before, {machine.load_average()} after")
    print(f"  CPUs: {pinning}")
    print(f"  method: {args.rounds} rounds of {args.requests} requests a proxy, 8 at a time, order rotated each round;")
    print(
        f"  then {max(args.requests // 10, 4)} requests to each, one at a time, {_PAUSE_SECONDS * 1e3:.0f} ms apart, "
        "the proxies in turn (latency: median of the rounds' medians, 8 at a time; median of all, one at a time)"
    )
    print(
        f"\n{'proxy':<38} {'CPU a request':>14} {'vs off':>11} {'ratio':>7}"
        f" {'latency, 8 at a time':>21} {'vs off':>9} {'one at a time':>14} {'vs off':>9}"
        f"   {'collections per 1000 requests, gen 0/1/2, time a request':<44} CPU rounds"
    )
    for mode, label in MODES.items():
        value = statistics.median(cpu[mode])
        spread = "…".join(f"{figure:.0f}" for figure in (min(cpu[mode]), max(cpu[mode])))
        loaded, idle = statistics.median(p50[mode]), statistics.median(alone[mode]) * 1e3
        print(
            f"{label:<38} {value:>11.0f} µs {value - off:>+8.0f} µs {value / off:>6.2f}x "
            f"{loaded:>18.3f} ms {loaded - latency_off:>+6.3f} ms {idle:>11.3f} ms {idle - alone_off:>+6.3f} ms"
            f"   {_collections(collected[mode], collected_after[mode], served):<44} [{spread}] µs"
        )
    print(
        f"\nthe telemetry calls of one request alone, in a loop: off {calls_off:.2f} µs "
        f"({calls_off / off:.3%} of a request); everything on {calls_before + calls_after:.0f} µs, "
        f"of which {calls_before:.1f} µs before the answer's last byte and {calls_after:.0f} µs after it"
    )
    (embed_cpu, embed_queued), (floor_cpu, floor_queued) = spans["embed"], spans["floor"]
    print(
        f"a traced request's spans (and OpenTelemetry metrics), in a loop, collections paused: "
        f"{embed_cpu:.0f} µs of CPU, {embed_queued:.0f} objects left queued; their floor, the same six spans "
        f"and two histogram measurements made straight through the SDK: {floor_cpu:.0f} µs, {floor_queued:.0f} objects "
        f"(the embed at {embed_cpu / floor_cpu:.2f}x the floor)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=1000, help="per proxy per round")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that the bench works")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the proxies on one CPU, the load generator and the fake upstream on the others",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests = 2, 40
    with tempfile.TemporaryDirectory(prefix="wattfare-bench-telemetry-") as workdir:
        asyncio.run(bench(args, Path(workdir)))


if __name__ == "__main__":
    main()
