"""What telemetry costs a metered request, measured in one run.

Proxy processes serve the same requests against the fake upstream: one with telemetry off,
one with all of it on (every request traced, its spans through a batch processor, metrics through
the SDK, Prometheus metrics, the request log written by a JSON formatter), and one the same but
tracing one request in ten (OpenTelemetry's ratio sampler, as busy services run it). Each proxy's CPU time is
read from /proc before and after every round, so the figure is the work a request costs the
proxy, not a wall-clock latency that the load generator and the upstream share two cores with.
Rounds rotate between the proxies so that load from elsewhere moves all of them alike.

Beside it, in this process: the telemetry calls of one request timed in a loop, off (the shared
``NO_TRACE``) and on (a trace through every export).

    python -m bench.telemetry [--requests 1500] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from wattfare_embed import Telemetry, Wattfare, new_key_pair
from wattfare_embed.store import NewConnection
from wattfare_embed.telemetry import REQUEST_LOGGER, Recorder
from wattfare_embed.testing.live_server import free_port

USER = "bench-user"
MODEL = "openai/gpt-4o-mini"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}
TICKS = os.sysconf("SC_CLK_TCK")
FIELDS = ("ledger_id", "outcome", "model", "cost_micros", "hold_micros", "latency_ms")
# What each proxy reports, by name: one part at a time, then everything together.
MODES = {
    "off": "telemetry off",
    "logs": "request log (JSON formatter)",
    "prometheus": "Prometheus metrics",
    "otel-metrics": "OpenTelemetry metrics",
    "otel-traces": "OpenTelemetry spans, every request",
    "all": "all of it, every request traced",
    "all-sampled": "all of it, 1 request in 10 traced",
}


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"message": record.getMessage(), **{name: getattr(record, name, None) for name in FIELDS}})


def _tracer_provider(traced: float) -> Any:
    """OpenTelemetry's SDK as an app sets it up: a ratio sampler, a batch processor (exporting nowhere)."""
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


def _telemetry(mode: str) -> Telemetry:
    logs, traced = mode in ("logs", "all", "all-sampled"), {"all-sampled": 0.1}.get(mode, 1.0)
    if logs:
        _log_to_nowhere()
    return Telemetry(
        opentelemetry=mode in ("otel-metrics", "otel-traces", "all", "all-sampled"),
        tracer_provider=_tracer_provider(traced) if mode in ("otel-traces", "all", "all-sampled") else None,
        meter_provider=_meter_provider() if mode in ("otel-metrics", "all", "all-sampled") else None,
        prometheus=mode in ("prometheus", "all", "all-sampled"),
        request_logs=logs,
    )


def serve(port: int, mode: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    wf = Wattfare(app_name="bench", telemetry=_telemetry(mode))  # keys, database and upstream from the environment
    app = Starlette(routes=[Mount("/wattfare", app=wf)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def _connect_user(database_url: str, secret: str, publishable: str) -> None:
    wf = Wattfare(secret_key=secret, publishable_key=publishable, database_url=database_url)
    async with wf:
        sealed = wf.credentials.seal("sk-or-v1-bench", f"{wf.keys.app_id}/{USER}")
        connection = NewConnection(wf.keys.app_id, USER, "dev", 900_000_000, sealed)
        await wf.store.save_connection(connection, int(time.time()))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def _round(session: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int) -> list[float]:
    latencies: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            async with session.post(url, json=BODY, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"the proxy answered {response.status}")
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(8)))
    return latencies


def _in_process() -> tuple[float, float]:
    """Microseconds the telemetry calls of one request take: off, and on with every export."""
    off = Recorder(_telemetry("off"), "sk_test_bench_" + "x" * 43)
    on = Recorder(_telemetry("all"), "sk_test_bench_" + "x" * 43)
    off.start()
    on.start()
    usage = {"prompt_tokens": 12, "completion_tokens": 8, "cost": 0.000012}
    figures = []
    for recorder in (off, on):
        for repeat in range(2):  # the first warms up
            count = 20_000 if recorder is off else 5_000
            start = time.perf_counter()
            for _ in range(count):
                trace = recorder.begin("chat")
                trace.authenticated("user-1")
                trace.priced(MODEL)
                trace.reserved("req_0123456789abcdef01234567", 960)
                trace.upstream_first_byte(200)
                trace.upstream_last_byte()
                trace.settling()
                trace.settled(12, "reported", usage, MODEL)
                trace.finished("ok")
            if repeat:
                figures.append((time.perf_counter() - start) / count * 1e6)
    return figures[0], figures[1]


async def bench(args: argparse.Namespace) -> None:
    pair = new_key_pair()
    fake_port = free_port()
    processes = [
        subprocess.Popen([sys.executable, "-m", "wattfare_embed.testing.fake_openrouter", "--port", str(fake_port)])
    ]
    upstream = f"http://127.0.0.1:{fake_port}/api/v1"
    proxies: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        await _wait_ready(upstream + "/models")
        for mode in MODES:
            database = f"sqlite+aiosqlite:///{Path(args.workdir) / f'{mode}.db'}"
            await _connect_user(database, pair.secret_key, pair.publishable_key)
            port = free_port()
            environment = {
                **os.environ,
                "WATTFARE_SECRET_KEY": pair.secret_key,
                "WATTFARE_PUBLISHABLE_KEY": pair.publishable_key,
                "WATTFARE_DATABASE_URL": database,
                "WATTFARE_UPSTREAM_URL": upstream,
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.telemetry", "--serve", str(port), "--telemetry", mode], env=environment
            )
            processes.append(process)
            proxies[mode] = (port, process)
            await _wait_ready(f"http://127.0.0.1:{port}/wattfare/api/v1/models")
        headers = {"authorization": f"Bearer {pair.secret_key}", "x-wattfare-user": USER}
        cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
        p50: dict[str, list[float]] = {mode: [] for mode in MODES}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for port, _process in proxies.values():  # warm up every one
                await _round(session, f"http://127.0.0.1:{port}/wattfare/api/v1/chat/completions", headers, 200)
            for index in range(args.rounds):
                names = list(MODES)
                for mode in names[index % len(names) :] + names[: index % len(names)]:
                    port, process = proxies[mode]
                    url = f"http://127.0.0.1:{port}/wattfare/api/v1/chat/completions"
                    before = _cpu_seconds(process.pid)
                    latencies = await _round(session, url, headers, args.requests)
                    cpu[mode].append((_cpu_seconds(process.pid) - before) / args.requests * 1e6)
                    p50[mode].append(statistics.median(latencies) * 1e3)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    median_cpu = {mode: statistics.median(values) for mode, values in cpu.items()}
    median_p50 = {mode: statistics.median(values) for mode, values in p50.items()}
    calls_off, calls_on = _in_process()
    off = median_cpu["off"]
    print(f"\nwattfare_embed telemetry cost: {args.rounds} rounds of {args.requests} requests a proxy, concurrency 8\n")
    print(f"{'proxy':<36} {'CPU a request':>14} {'vs off':>10} {'ratio':>7} {'median latency':>15}   rounds (µs)")
    for mode, label in MODES.items():
        value = median_cpu[mode]
        print(
            f"{label:<36} {value:>11.1f} µs {value - off:>+8.1f} µs {value / off:>7.3f} "
            f"{median_p50[mode]:>12.3f} ms   {_spread(cpu[mode])}"
        )
    print(f"\nthe telemetry calls of one request, in process: off {calls_off:.2f} µs, all on {calls_on:.1f} µs")


def _spread(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--telemetry", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.telemetry)
        return
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
