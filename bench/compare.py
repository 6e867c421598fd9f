"""Two (or more) source trees of the embed side by side, in one run: what a change bought.

    git worktree add /tmp/before <commit>
    python -m bench.compare --rounds 10 before=/tmp/before after=.
    python -m bench.compare --postgres before=/tmp/before after=.

Direct calls, the forwarding-only floor and one proxy per tree (each its own process, its own
database: SQLite, or with ``--postgres`` a fresh PostgreSQL database each) are measured in short
rounds whose order rotates, so a load swing hits every tree alike. Each round takes, for every
target, the p50 and p99 of a whole non-streamed reply and the p50 of the first streamed event
at concurrency 1, and the requests/s and server CPU per request at concurrency 32; a figure is
the median over rounds of its difference with direct's in the same round.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from wattfare_embed import AppKeys, new_key_pair
from wattfare_embed.testing.live_server import free_port

from . import procfs
from .load import Endpoint, chat_body, latencies, throughput, timed_call
from .run import _run
from .servers import UPSTREAM_KEY, Fleet, Server, connect_users, drop_postgres, fresh_postgres

__all__ = ["main"]

USER = "bench-user"
DIRECT, FLOOR = "direct", "floor"


@dataclass
class _Series:
    plain: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _tree_proxy(fleet: Fleet, name: str, tree: Path, database_url: str, upstream: Server, keys: AppKeys) -> Server:
    """The embed of ``tree`` (its package and its bench first on the path), on ``database_url``."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.serve_proxy", "--port", str(port), "--database-url", database_url]
    argv += ["--upstream-url", upstream.base + "/api/v1", "--secret-key", keys.secret_key]
    argv += ["--publishable-key", keys.publishable_key]
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    return fleet.spawn(name, argv, port=port, env=env)


async def _round(
    session: aiohttp.ClientSession, endpoint: Endpoint, server: Server, args: argparse.Namespace
) -> tuple[float, float, float, float, float]:
    plain_call = functools.partial(timed_call, session, endpoint, chat_body(endpoint, stream=False))
    plain = sorted(await latencies(plain_call, args.requests))
    stream_call = functools.partial(timed_call, session, endpoint, chat_body(endpoint, stream=True))
    first = statistics.median(await latencies(stream_call, args.requests))
    before = procfs.cpu_seconds([server.pid])
    done, elapsed = await throughput(plain_call, args.seconds, args.concurrency)
    cpu = (procfs.cpu_seconds([server.pid]) - before) / done
    return statistics.median(plain), plain[int(len(plain) * 0.99) - 1], first, done / elapsed, cpu


async def compare(args: argparse.Namespace, workdir: Path) -> dict[str, _Series]:
    keys = new_key_pair()
    fleet = Fleet(workdir)
    databases: list[str] = []
    try:
        fast = fleet.fake_upstream("fake upstream")
        slow = fleet.fake_upstream("slow upstream", chunk_delay=0.05)
        floor = fleet.floor("floor", upstream=fast, slow=slow)
        headers = {"authorization": f"Bearer {UPSTREAM_KEY}"}
        targets = [
            (DIRECT, Endpoint(fast.base + "/api/v1/chat/completions", headers), fast),
            (FLOOR, Endpoint(floor.base + "/fast/chat/completions", headers), floor),
        ]
        for spec in args.trees:
            name, _, tree = spec.partition("=")
            if args.postgres:
                database_url = await fresh_postgres(args.postgres_url, f"compare_{len(databases)}")
                databases.append(database_url)
            else:
                database_url = f"sqlite+aiosqlite:///{workdir / f'{len(targets)}.db'}"
            await connect_users(database_url, keys, {USER: None})
            proxy = _tree_proxy(fleet, name, Path(tree), database_url, fast, keys)
            user = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": USER}
            targets.append((name, Endpoint(proxy.base + "/wattfare/api/v1/chat/completions", user), proxy))
        await fleet.wait_ready(fast, "/api/v1/models")
        await fleet.wait_ready(floor, "/fast/models")
        for _name, _endpoint, server in targets[2:]:
            await fleet.wait_ready(server, "/wattfare/api/v1/models")
        series = {name: _Series() for name, _endpoint, _server in targets}
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _name, endpoint, _server in targets:  # warm-up: imports, caches, connections
                for stream in (False, True):
                    call = functools.partial(timed_call, session, endpoint, chat_body(endpoint, stream=stream))
                    await latencies(call, 100)
            for index in range(args.rounds):
                shift = index % len(targets)
                for name, endpoint, server in targets[shift:] + targets[:shift]:
                    plain, p99, first, rate, cpu = await _round(session, endpoint, server, args)
                    figures = series[name]
                    figures.plain.append(plain)
                    figures.p99.append(p99)
                    figures.first.append(first)
                    figures.rate.append(rate)
                    figures.cpu.append(cpu)
        return series
    finally:
        fleet.stop()
        for database_url in databases:
            await drop_postgres(args.postgres_url, database_url)


def _added(mine: list[float], base: list[float]) -> float:
    return statistics.median(a - b for a, b in zip(mine, base, strict=True)) * 1e3


def report(series: dict[str, _Series]) -> str:
    direct = series[DIRECT]
    lines = [
        f"direct: whole reply p50 {statistics.median(direct.plain) * 1e3:.2f} ms, first event "
        f"{statistics.median(direct.first) * 1e3:.2f} ms, {statistics.median(direct.rate):.0f} requests/s, "
        f"{statistics.median(direct.cpu) * 1e6:.0f} µs CPU a request",
        "",
        f"{'':12} {'added p50':>10} {'added p99':>10} {'added first':>12} {'% direct rps':>13} {'CPU µs':>7}"
        f" {'p50 beyond floor':>17} {'first beyond floor':>19}",
    ]
    for name, figures in series.items():
        if name == DIRECT:
            continue
        rate = statistics.median(a / b for a, b in zip(figures.rate, direct.rate, strict=True)) * 100
        beyond = ""
        if name != FLOOR:
            floor = series[FLOOR]
            beyond = f" {_added(figures.plain, floor.plain):+17.2f} {_added(figures.first, floor.first):+19.2f}"
        lines.append(
            f"{name:12} {_added(figures.plain, direct.plain):+10.2f} {_added(figures.p99, direct.p99):+10.2f}"
            f" {_added(figures.first, direct.first):+12.2f} {rate:13.0f} {statistics.median(figures.cpu) * 1e6:7.0f}"
            + beyond
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", metavar="NAME=PATH", help="a name and a source tree of the embed")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=150, help="per target and round, each kind, concurrency 1")
    parser.add_argument("--seconds", type=float, default=1.0, help="per target and round, at --concurrency")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--postgres", action="store_true", help="each tree on a fresh PostgreSQL database")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("WATTFARE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wattfare-compare-") as workdir:
        result: dict[str, _Series] = {}

        async def run() -> None:
            result.update(await compare(args, Path(workdir)))

        _run(run())
    print(report(result))


if __name__ == "__main__":
    main()
