"""The table of a run: every figure next to the direct figure of the same run, and the peer's.

Latency cells read ``value (multiple of direct)``; added latency is the target's median minus the
direct median of the same round, its spread ``[lowest…highest round]``; ``Nx lighter`` is the
peer's added figure over ours.
"""

from __future__ import annotations

import statistics

from .measures import Results, Target
from .report import Table, percentile, ratio, spread

__all__ = ["DIRECT", "FLOOR", "summarize"]

DIRECT = "direct"
# The forwarding-only proxy (bench.floor_proxy): the cost of a hop through any proxy of this shape.
FLOOR = "floor: forwarding only"
MS = 1000.0
US = 1_000_000.0


def _latency_rows(table: Table, results: dict[str, list[list[float]]], names: list[str], what: str) -> None:
    """p50 and p99 are taken per round and their median over rounds is shown: a burst of load from
    elsewhere then moves one round's figure, not the whole run's tail."""
    direct = results[DIRECT]
    direct_p50s = [percentile(samples, 0.5) for samples in direct]
    direct_p99s = [percentile(samples, 0.99) for samples in direct]
    direct_p50, direct_p99 = statistics.median(direct_p50s), statistics.median(direct_p99s)
    p50: dict[str, str] = {DIRECT: spread(direct_p50s).text(MS) + " ms"}
    p99: dict[str, str] = {DIRECT: spread(direct_p99s).text(MS) + " ms"}
    added50: dict[str, str] = {DIRECT: "—"}
    added99: dict[str, str] = {DIRECT: "—"}
    for name in names:
        round_p50s = [percentile(samples, 0.5) for samples in results[name]]
        round_p99s = [percentile(samples, 0.99) for samples in results[name]]
        median_p50, median_p99 = statistics.median(round_p50s), statistics.median(round_p99s)
        p50[name] = f"{median_p50 * MS:.2f} ms ({ratio(median_p50, direct_p50)})"
        p99[name] = f"{median_p99 * MS:.2f} ms ({ratio(median_p99, direct_p99)})"
        added = spread([mine - theirs for mine, theirs in zip(round_p50s, direct_p50s, strict=True)])
        added50[name] = f"{added.text(MS, sign=True)} ms (= {ratio(added.median, direct_p50)} direct)"
        tail = spread([mine - theirs for mine, theirs in zip(round_p99s, direct_p99s, strict=True)])
        added99[name] = f"{tail.text(MS, sign=True)} ms (= {ratio(tail.median, direct_p99)} direct)"
    table.add(f"{what}: p50 [round range]", p50)
    table.add(f"{what}: p99 [round range]", p99)
    table.add(f"{what}: added p50 [round range]", added50)
    table.add(f"{what}: added p99 [round range]", added99)


def added_p50(results: dict[str, list[list[float]]], name: str) -> float:
    """Median over rounds of the target's p50 minus the direct p50 of the same round."""
    pairs = zip(results[name], results[DIRECT], strict=True)
    return statistics.median(percentile(mine, 0.5) - percentile(theirs, 0.5) for mine, theirs in pairs)


def _floor_rows(table: Table, results: Results, names: list[str], concurrency: int) -> None:
    """What metering costs: each embed's figures minus the forwarding-only proxy's of the same run."""
    table.section("against the forwarding-only floor in this run: what metering adds")
    whole, first, cpu, rate = {}, {}, {}, {}
    floor_cpu = statistics.median(results.cpu[FLOOR])
    floor_rate = statistics.median(results.rate[FLOOR])
    for name in names:
        whole[name] = f"{(added_p50(results.plain, name) - added_p50(results.plain, FLOOR)) * MS:+.2f} ms"
        first[name] = f"{(added_p50(results.first_byte, name) - added_p50(results.first_byte, FLOOR)) * MS:+.2f} ms"
        mine = statistics.median(results.cpu[name]) + statistics.median(results.database_cpu[name])
        cpu[name] = f"{(mine - floor_cpu) * US:+.0f} µs"
        rate[name] = f"{statistics.median(results.rate[name]) / floor_rate:.0%} of the floor's"
    table.add("added p50 beyond the floor's, whole reply", whole)
    table.add("added p50 beyond the floor's, first byte", first)
    table.add("server CPU per request beyond the floor's (database included)", cpu)
    table.add(f"requests/s at concurrency {concurrency}", rate)


def _telemetry_rows(table: Table, results: Results, names: list[str], baseline: str) -> None:
    """What telemetry adds: each telemetry target's figures minus the same embed's with it off."""
    table.section(f"telemetry: against {baseline} (telemetry off) in this run")
    cpu, whole, first = {}, {}, {}
    off_cpu = statistics.median(results.cpu[baseline])
    for name in names:
        mine = statistics.median(results.cpu[name])
        cpu[name] = f"{(mine - off_cpu) * US:+.0f} µs ({ratio(mine, off_cpu)})"
        whole[name] = f"{(added_p50(results.plain, name) - added_p50(results.plain, baseline)) * MS:+.3f} ms"
        first[name] = f"{(added_p50(results.first_byte, name) - added_p50(results.first_byte, baseline)) * MS:+.3f} ms"
    table.add("server CPU per request, more than with telemetry off", cpu)
    table.add("added p50, whole reply, more than with telemetry off", whole)
    table.add("added p50, first byte, more than with telemetry off", first)


def summarize(
    results: Results,
    targets: list[Target],
    *,
    peer: str | None,
    concurrency: int,
    telemetry_baseline: str | None = None,
) -> Table:
    names = [target.name for target in targets if target.name != DIRECT]
    table = Table(columns=[DIRECT, *names])
    table.section("concurrency 1, non-streaming: time to the whole reply")
    _latency_rows(table, results.plain, names, "whole reply")
    table.section("concurrency 1, streaming: time to the first content event")
    _latency_rows(table, results.first_byte, names, "first byte")

    table.section(f"concurrency {concurrency}, non-streaming, one server process each")
    direct_rate = statistics.median(results.rate[DIRECT])
    direct_cpu = statistics.median(results.cpu[DIRECT])
    rates = {DIRECT: spread(results.rate[DIRECT]).text(digits=0)}
    cpu = {DIRECT: f"{direct_cpu * US:.0f} µs (the upstream's)"}
    for name in names:
        rate = statistics.median(results.rate[name])
        rates[name] = f"{spread(results.rate[name]).text(digits=0)} ({rate / direct_rate:.0%} of direct)"
        mine = statistics.median(results.cpu[name])
        cell = f"{mine * US:.0f} µs ({ratio(mine, direct_cpu)})"
        database = statistics.median(results.database_cpu[name])
        if database > 0:
            cell += f" + database {database * US:.0f} µs"
        cpu[name] = cell
    table.add("requests/s [round range]", rates)
    table.add("server CPU per request (multiple of the upstream's)", cpu)

    table.section("streams")
    events = results.stream_events[DIRECT]
    direct_last = statistics.median(results.stream_last[DIRECT])
    direct_event_cpu = statistics.median(results.event_cpu[DIRECT])
    last = {DIRECT: f"{spread(results.stream_last[DIRECT]).text(MS, digits=1)} ms"}
    event_cpu = {DIRECT: f"{direct_event_cpu * US:.1f} µs (the upstream's)"}
    for name in names:
        mine = statistics.median(results.stream_last[name])
        last[name] = f"{spread(results.stream_last[name]).text(MS, digits=1)} ms ({ratio(mine, direct_last)})"
        mine = statistics.median(results.event_cpu[name])
        event_cpu[name] = f"{mine * US:.1f} µs ({ratio(mine, direct_event_cpu)})"
    table.add(f"reply of {events} events, fast upstream: time to its end", last)
    table.add("server CPU per streamed event (multiple of the upstream's)", event_cpu)
    gaps = {}
    direct_gap = statistics.median(results.gaps[DIRECT])
    for name in [DIRECT, *names]:
        median_gap, largest = statistics.median(results.gaps[name]), max(results.gaps[name])
        gaps[name] = f"{median_gap * MS:.1f} / {largest * MS:.1f} ms"
        if name != DIRECT:
            gaps[name] += f" ({ratio(median_gap, direct_gap)})"
    table.add("upstream pauses 50 ms per chunk: median / largest gap", gaps)

    if FLOOR in names:
        _floor_rows(table, results, [name for name in names if name.startswith("embed")], concurrency)
    if telemetry_baseline is not None:
        _telemetry_rows(table, results, [name for name in names if "telemetry" in name], telemetry_baseline)
    if peer is not None:
        table.section(f"against {peer} in this run (its figure over ours)")
        ours = [name for name in names if name not in (peer, FLOOR)]
        lighter: dict[str, dict[str, str]] = {"latency": {}, "first": {}, "rate": {}, "cpu": {}}
        for name in ours:
            lighter["latency"][name] = (
                ratio(added_p50(results.plain, peer), added_p50(results.plain, name)) + " lighter"
            )
            lighter["first"][name] = (
                ratio(added_p50(results.first_byte, peer), added_p50(results.first_byte, name)) + " lighter"
            )
            rate = statistics.median(results.rate[name]) / statistics.median(results.rate[peer])
            lighter["rate"][name] = f"{rate:.1f}x the requests/s"
            mine = statistics.median(results.cpu[name]) + statistics.median(results.database_cpu[name])
            cpu_ratio = ratio(statistics.median(results.cpu[peer]), mine)
            lighter["cpu"][name] = f"{cpu_ratio} less CPU per request"
        table.add("added p50, whole reply", lighter["latency"])
        table.add("added p50, first byte", lighter["first"])
        table.add(f"requests/s at concurrency {concurrency}", lighter["rate"])
        table.add("server CPU per request (database included)", lighter["cpu"])
    return table
