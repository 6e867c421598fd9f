"""The measures of one run, taken in alternating rounds so that a load swing hits every target alike.

Each round visits every target once, in an order rotated by one each round; a target's figure is
taken per round and paired with the direct figure of the same round, and the spread over rounds
is reported with the median.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from . import procfs
from .load import Endpoint, chat_body, latencies, stream_timing, throughput, timed_call

__all__ = ["Plan", "Results", "Target", "measure", "warm_up"]

# A reply of two thousand events (the fake echoes the prompt in pieces of up to four characters).
LONG_PROMPT = " ".join(["word"] * 1000)
LONG_TOKENS = 2000
# About twenty events, one every chunk delay of the slow upstream.
GAP_PROMPT = " ".join(["one", "two", "six", "ten"] * 5)


@dataclass(frozen=True)
class Target:
    """Something to call: the upstream itself, the embed on one database, or a peer proxy."""

    name: str
    fast: Endpoint
    slow: Endpoint  # routed to the upstream that pauses between chunks
    server_pids: Callable[[], list[int]]  # whose CPU is this target's cost
    database_pids: Callable[[], list[int]] = lambda: []


@dataclass(frozen=True)
class Plan:
    rounds: int
    requests: int  # per target per round, concurrency 1
    seconds: float  # per target per round, throughput window
    concurrency: int
    stream_rounds: int
    long_streams: int  # per target per round
    gap_streams: int  # per target, all at once
    warmup: int


@dataclass
class Results:
    plain: dict[str, list[list[float]]] = field(default_factory=dict)  # whole-reply seconds, per round
    first_byte: dict[str, list[list[float]]] = field(default_factory=dict)
    rate: dict[str, list[float]] = field(default_factory=dict)  # requests/s per round
    cpu: dict[str, list[float]] = field(default_factory=dict)  # server CPU seconds per request, per round
    database_cpu: dict[str, list[float]] = field(default_factory=dict)
    stream_last: dict[str, list[float]] = field(default_factory=dict)  # seconds to a long reply's end, per round
    event_cpu: dict[str, list[float]] = field(default_factory=dict)  # server CPU seconds per event, per round
    stream_events: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, list[float]] = field(default_factory=dict)


def _rotated(targets: list[Target], round_index: int) -> list[Target]:
    shift = round_index % len(targets)
    return targets[shift:] + targets[:shift]


async def warm_up(session: aiohttp.ClientSession, target: Target, plan: Plan) -> None:
    """First requests pay for imports, caches and connections: they are not counted."""
    for stream in (False, True):
        body = chat_body(target.fast, stream=stream)
        await latencies(functools.partial(timed_call, session, target.fast, body), plan.warmup)
    body = chat_body(target.fast, stream=False)
    await throughput(functools.partial(timed_call, session, target.fast, body), plan.seconds / 2, plan.concurrency)
    long_body = chat_body(target.fast, stream=True, prompt=LONG_PROMPT, max_tokens=LONG_TOKENS)
    for _ in range(2):
        await stream_timing(session, target.fast, long_body)


def _cpu_each(pids: list[int]) -> dict[int, float]:
    return {pid: procfs.cpu_seconds([pid]) for pid in pids}


async def _throughput_round(session: aiohttp.ClientSession, target: Target, plan: Plan, results: Results) -> None:
    body = chat_body(target.fast, stream=False)
    servers, databases = target.server_pids(), target.database_pids()
    before, database_before = _cpu_each(servers), _cpu_each(databases)
    done, elapsed = await throughput(
        functools.partial(timed_call, session, target.fast, body), plan.seconds, plan.concurrency
    )
    used = sum(procfs.cpu_seconds([pid]) - before.get(pid, 0.0) for pid in servers)
    # A pooled connection opened during the window counts from its start.
    database_used = sum(
        procfs.cpu_seconds([pid]) - database_before.get(pid, 0.0) for pid in {*databases, *target.database_pids()}
    )
    results.rate.setdefault(target.name, []).append(done / elapsed)
    results.cpu.setdefault(target.name, []).append(used / done)
    results.database_cpu.setdefault(target.name, []).append(database_used / done)


async def _stream_round(session: aiohttp.ClientSession, target: Target, plan: Plan, results: Results) -> None:
    """Long replies against short ones: the difference in server CPU over the difference in events
    is what one more streamed event costs, whatever the fixed cost of a request."""
    servers = target.server_pids()
    long_body = chat_body(target.fast, stream=True, prompt=LONG_PROMPT, max_tokens=LONG_TOKENS)
    short_body = chat_body(target.fast, stream=True)
    start = procfs.cpu_seconds(servers)
    long = [await stream_timing(session, target.fast, long_body) for _ in range(plan.long_streams)]
    middle = procfs.cpu_seconds(servers)
    short = [await stream_timing(session, target.fast, short_body) for _ in range(plan.long_streams)]
    end = procfs.cpu_seconds(servers)
    long_events = statistics.median(timing.events for timing in long)
    extra_events = (long_events - statistics.median(timing.events for timing in short)) * plan.long_streams
    results.stream_last.setdefault(target.name, []).append(statistics.median(timing.arrivals[-1] for timing in long))
    results.event_cpu.setdefault(target.name, []).append(((middle - start) - (end - middle)) / extra_events)
    results.stream_events[target.name] = int(long_events)


async def measure(session: aiohttp.ClientSession, targets: list[Target], plan: Plan) -> Results:
    results = Results()
    for stream, samples in ((False, results.plain), (True, results.first_byte)):
        for round_index in range(plan.rounds):
            for target in _rotated(targets, round_index):
                call = functools.partial(timed_call, session, target.fast, chat_body(target.fast, stream=stream))
                samples.setdefault(target.name, []).append(await latencies(call, plan.requests))
    for round_index in range(plan.rounds):
        for target in _rotated(targets, round_index):
            await _throughput_round(session, target, plan, results)
    for round_index in range(plan.stream_rounds):
        for target in _rotated(targets, round_index):
            await _stream_round(session, target, plan, results)

    async def gaps_of(target: Target) -> list[float]:
        body = chat_body(target.slow, stream=True, prompt=GAP_PROMPT, max_tokens=64)
        timings = await asyncio.gather(*(stream_timing(session, target.slow, body) for _ in range(plan.gap_streams)))
        return [gap for timing in timings for gap in timing.gaps]

    # The slow streams mostly wait, so all targets stream at once: one second instead of one per target.
    for target, gaps in zip(targets, await asyncio.gather(*(gaps_of(t) for t in targets)), strict=True):
        results.gaps[target.name] = gaps
    return results
