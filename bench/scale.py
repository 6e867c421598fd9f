"""How the proxy's cost grows with the work: users, ledger rows, open streams, request and reply size.

    python -m bench.scale            # make bench-scale: SQLite and PostgreSQL, about three minutes
    python -m bench.scale --quick    # tiny counts, to check that it runs

Each figure is printed beside the same figure at the small end (one user, an empty ledger, no
open streams, a small prompt, a short reply) measured in the same run, so what grows shows as a
multiple. Store operations are also run in this process with the plan the database chose for each
statement; a plan that reads a whole big table or sorts is flagged, since its cost grows with rows.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from wattfare_embed import AppKeys, new_key_pair

from . import machine, procfs
from .load import Endpoint, chat_body, latencies, stream_timing, timed_call
from .queries import OperationCost, explain, time_operations
from .report import Table, percentile, ratio
from .run import FAST_USER, SLOW_USER, _run
from .seed import seed_ledger, seed_users, user_name
from .servers import UPSTREAM_KEY, Fleet, Server, connect_users, drop_postgres, fresh_postgres

__all__ = ["main"]


@dataclass(frozen=True)
class Sizes:
    users: int
    ledger_rows: int
    streams: int
    prompt_bytes: int
    samples: int  # timed requests per side and measure
    repeats: int  # runs of each store operation
    pause: float  # seconds over which idle CPU is measured, and for closed streams to settle


SIZES = {
    "full": Sizes(
        users=10_000, ledger_rows=1_000_000, streams=1_000, prompt_bytes=1_000_000, samples=300, repeats=30, pause=4.0
    ),
    "quick": Sizes(users=50, ledger_rows=2_000, streams=10, prompt_bytes=50_000, samples=10, repeats=2, pause=0.5),
}
MB = 1024 * 1024


def _mib(size: float) -> str:
    return f"{size / MB:.1f} MiB"


@dataclass
class Latency:
    direct: list[float]
    proxied: list[float]

    @property
    def added_p50(self) -> float:
        return statistics.median(self.proxied) - statistics.median(self.direct)

    @property
    def added_p99(self) -> float:
        return percentile(self.proxied, 0.99) - percentile(self.direct, 0.99)

    def text(self, reference: Latency | None = None) -> str:
        cell = f"{self.added_p50 * 1000:+.2f} / {self.added_p99 * 1000:+.2f} ms"
        if reference is not None:
            cell += f" ({ratio(self.added_p50, reference.added_p50)})"
        return cell


class Scale:
    def __init__(self, session: aiohttp.ClientSession, sizes: Sizes, direct: Endpoint) -> None:
        self.session, self.sizes, self.direct = session, sizes, direct

    async def latency(self, proxied: Endpoint | list[Endpoint], body: dict[str, object] | None = None) -> Latency:
        """Direct and proxied calls in alternating blocks of 25, so load swings hit both."""
        endpoints = proxied if isinstance(proxied, list) else [proxied]
        body = body or chat_body(self.direct, stream=False)
        turn = 0

        async def through_proxy() -> float:
            nonlocal turn
            turn += 1
            return await timed_call(self.session, endpoints[turn % len(endpoints)], body)

        direct: list[float] = []
        proxied_samples: list[float] = []
        block = min(25, self.sizes.samples)
        for _ in range(max(1, self.sizes.samples // block)):
            direct += await latencies(functools.partial(timed_call, self.session, self.direct, body), block)
            proxied_samples += await latencies(through_proxy, block)
        return Latency(direct, proxied_samples)


def _embed(proxy: Server, keys: AppKeys, user: str) -> Endpoint:
    headers = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user}
    return Endpoint(proxy.base + "/wattfare/api/v1/chat/completions", headers)


def _short(sql: str) -> str:
    """The statement on one line, its column lists elided: what it filters and orders by is what matters."""
    return re.sub(r"SELECT .*? FROM", "SELECT … FROM", " ".join(sql.split()))[:500]


async def _database_size(database_url: str, workdir: Path) -> int:
    if database_url.startswith("sqlite"):
        return sum(path.stat().st_size for path in workdir.glob("scale.db*"))
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    connection = await asyncpg.connect(user=url.username, host=url.host, port=url.port or 5432, database=url.database)
    try:
        size: int = await connection.fetchval("SELECT pg_total_relation_size('wattfare_ledger')")
    finally:
        await connection.close()
    return size


async def users_and_ledger(
    scale: Scale, label: str, database_url: str, proxy: Server, keys: AppKeys, workdir: Path
) -> tuple[Table, list[str]]:
    sizes = scale.sizes
    columns = ["1 user, empty ledger", f"{sizes.users:,} users", f"+ {sizes.ledger_rows:,} ledger rows"]
    table = Table(columns=columns, title=f"{label}: added p50 / p99 (multiple of the first column)")
    me = _embed(proxy, keys, FAST_USER)

    async def operations() -> list[OperationCost]:
        return await time_operations(
            database_url, keys.app_id, heavy_user=FAST_USER, other_user=user_name(1), repeats=sizes.repeats
        )

    for _ in range(2):  # warm-up: the first hundreds of requests of a new process run slower
        await scale.latency(me)
    base = await scale.latency(me)
    base_rss = procfs.rss_bytes(proxy.pid)
    await seed_users(database_url, keys, 0, sizes.users - 1)
    # Warm every user once (a cache per user would show here as memory), then time them in turn.
    everyone = [_embed(proxy, keys, user_name(index)) for index in range(sizes.users - 1)]
    body = chat_body(scale.direct, stream=False)
    for start in range(0, len(everyone), 16):
        await asyncio.gather(*(timed_call(scale.session, e, body) for e in everyone[start : start + 16]))
    users_rss = procfs.rss_bytes(proxy.pid)
    many_me = await scale.latency(me)
    many_each = await scale.latency(everyone)
    before = await operations()
    seconds = await seed_ledger(
        database_url, keys.app_id, count=sizes.ledger_rows, users=sizes.users - 1, heavy_user=FAST_USER
    )
    big_me = await scale.latency(me)
    after = await operations()
    ledger_rss = procfs.rss_bytes(proxy.pid)

    table.add("one user's requests", {columns[0]: base.text(), columns[1]: many_me.text(base),
                                      columns[2]: big_me.text(base)})  # fmt: skip
    table.add("each request another user", {columns[1]: many_each.text(base)})
    table.add("proxy resident memory", {columns[0]: _mib(base_rss), columns[1]: _mib(users_rss),
                                        columns[2]: _mib(ledger_rss)})  # fmt: skip
    table.section("store operations in this process, median (multiple of the 10k-user figure)")
    findings: list[str] = []
    for small, large in zip(before, after, strict=True):
        cell = f"{large.median * 1e6:.0f} µs ({ratio(large.median, small.median)})"
        table.add(small.name, {columns[1]: f"{small.median * 1e6:.0f} µs", columns[2]: cell})
        for statement in large.statements:
            plan, flagged = await explain(database_url, statement)
            if flagged:
                findings.append(
                    f"{label}: {large.name}: {small.median * 1e6:.0f} µs → {large.median * 1e6:.0f} µs "
                    f"with {sizes.ledger_rows:,} rows ({ratio(large.median, small.median)}); plan: "
                    + " | ".join(line.strip() for line in plan)
                    + f"\n      statement: {_short(statement.sql)}"
                )
    size = await _database_size(database_url, workdir)
    table.notes.append(
        f"  seeded {sizes.ledger_rows:,} ledger rows in {seconds:.1f} s; "
        f"ledger on disk {_mib(size)} ({size / sizes.ledger_rows:.0f} bytes a row, indexes included)"
    )
    return table, findings


async def _hold_stream(session: aiohttp.ClientSession, endpoint: Endpoint, opened: asyncio.Semaphore,
                       counter: list[int]) -> None:  # fmt: skip
    body = chat_body(endpoint, stream=True, prompt=" ".join(["one", "two", "six", "ten"] * 15), max_tokens=200)
    async with opened:
        response = await session.post(endpoint.url, json=body, headers=endpoint.headers)
        async for chunk in response.content.iter_any():
            if b"data:" in chunk:
                break
    counter[0] += 1
    try:
        async for _chunk in response.content.iter_any():
            pass
    finally:
        response.close()


async def open_streams(scale: Scale, proxy: Server, slow: Server, keys: AppKeys) -> Table:
    count = scale.sizes.streams
    table = Table(columns=["no open stream", f"{count:,} open streams"], title="SQLite proxy")
    me = _embed(proxy, keys, FAST_USER)
    quiet = await scale.latency(me)
    proxy_rss, fake_rss = procfs.rss_bytes(proxy.pid), procfs.rss_bytes(slow.pid)
    pause = scale.sizes.pause
    idle_start = procfs.cpu_seconds([proxy.pid])
    await asyncio.sleep(pause)
    idle_cpu = (procfs.cpu_seconds([proxy.pid]) - idle_start) / pause
    opened, counter = asyncio.Semaphore(50), [0]
    streams = [
        asyncio.ensure_future(_hold_stream(scale.session, _embed(proxy, keys, SLOW_USER), opened, counter))
        for _ in range(count)
    ]
    deadline = time.monotonic() + 120
    while counter[0] < count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    if counter[0] < count:
        raise RuntimeError(f"only {counter[0]} of {count} streams opened")
    open_rss, open_fake = procfs.rss_bytes(proxy.pid), procfs.rss_bytes(slow.pid)
    busy_start = procfs.cpu_seconds([proxy.pid])
    await asyncio.sleep(pause)
    busy_cpu = (procfs.cpu_seconds([proxy.pid]) - busy_start) / pause
    busy = await scale.latency(me)
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    await asyncio.sleep(pause)
    after = await scale.latency(me)
    none, many = table.columns
    per_stream = (open_rss - proxy_rss) / count / 1024
    per_fake_stream = (open_fake - fake_rss) / count / 1024
    table.add("other requests: added p50 / p99 (multiple of no stream)", {none: quiet.text(), many: busy.text(quiet)})
    table.add(
        "proxy resident memory", {none: _mib(proxy_rss), many: f"{_mib(open_rss)} ({per_stream:.1f} KiB a stream)"}
    )
    table.add(
        "the fake upstream's memory (a plain Starlette server, for scale)",
        {none: _mib(fake_rss), many: f"{_mib(open_fake)} ({per_fake_stream:.1f} KiB a stream)"},
    )
    table.add(
        "proxy CPU with no request but the open streams (one chunk a stream every second)",
        {
            none: f"{idle_cpu:.1%} of a core",
            many: f"{busy_cpu:.1%} of a core ({busy_cpu / count * 1e6:.0f} µs a stream a second)",
        },
    )
    left = _mib(procfs.rss_bytes(proxy.pid))
    table.notes.append(f"  after the streams closed: other requests {after.text(quiet)}; proxy memory {left}")
    return table


async def request_and_reply_size(scale: Scale, proxy: Server, keys: AppKeys) -> Table:
    sizes = scale.sizes
    me = _embed(proxy, keys, FAST_USER)
    big = ("lorem ipsum dolor sit amet " * (sizes.prompt_bytes // 27 + 1))[: sizes.prompt_bytes]
    small = await scale.latency(me)
    peak_before = procfs.peak_rss_bytes(proxy.pid)
    # The prompt in a system message: the fake echoes the last user message, so the reply stays short.
    large_body = chat_body(scale.direct, stream=False)
    large_body["messages"] = [{"role": "system", "content": big}, *large_body["messages"]]
    large = await scale.latency(me, large_body)
    peak_after = procfs.peak_rss_bytes(proxy.pid)
    table = Table(columns=["small prompt", f"{sizes.prompt_bytes / MB:.2f} MiB prompt"], title="SQLite proxy")
    table.add("direct p50", {table.columns[0]: f"{statistics.median(small.direct) * 1000:.2f} ms",
                             table.columns[1]: f"{statistics.median(large.direct) * 1000:.2f} ms"})  # fmt: skip
    per_mb = (large.added_p50 - small.added_p50) / (sizes.prompt_bytes / MB)
    table.add("added p50 / p99 (multiple of the small prompt's)", {table.columns[0]: small.text(),
              table.columns[1]: large.text(small) + f"; {per_mb * 1000:.1f} ms a MiB"})  # fmt: skip
    table.add("proxy peak memory", {table.columns[0]: _mib(peak_before), table.columns[1]: _mib(peak_after)})

    async def cpu_per_event(tokens: int) -> tuple[float, int]:
        long = chat_body(scale.direct, stream=True, prompt=" ".join(["word"] * (tokens // 2)), max_tokens=tokens)
        short = chat_body(scale.direct, stream=True)
        start = procfs.cpu_seconds([proxy.pid])
        timings = [await stream_timing(scale.session, me, long) for _ in range(sizes.repeats)]
        middle = procfs.cpu_seconds([proxy.pid])
        shorts = [await stream_timing(scale.session, me, short) for _ in range(sizes.repeats)]
        end = procfs.cpu_seconds([proxy.pid])
        events = timings[0].events - shorts[0].events
        return ((middle - start) - (end - middle)) / (sizes.repeats * events), timings[0].events

    few, few_events = await cpu_per_event(200)
    many, many_events = await cpu_per_event(4000)
    table.add(
        f"proxy CPU per streamed event: {few_events} vs {many_events} events a reply",
        {table.columns[0]: f"{few * 1e6:.1f} µs", table.columns[1]: f"{many * 1e6:.1f} µs ({ratio(many, few)})"},
    )
    return table


async def scale_run(args: argparse.Namespace, workdir: Path) -> None:
    sizes = SIZES["quick" if args.quick else "full"]
    started, load_before = time.monotonic(), machine.load_average()
    keys = new_key_pair()
    fleet = Fleet(workdir)
    postgres_url: str | None = None
    output: list[str] = []
    findings: list[str] = []
    try:
        fast = fleet.fake_upstream("fake upstream")
        slow = fleet.fake_upstream("slow fake upstream", chunk_delay=1.0)
        databases = [("SQLite", f"sqlite+aiosqlite:///{workdir / 'scale.db'}")]
        if not args.no_postgres:
            postgres_url = await fresh_postgres(args.postgres_url, "scale")
            databases.append(("PostgreSQL", postgres_url))
        proxies: dict[str, Server] = {}
        for label, database_url in databases:
            await connect_users(database_url, keys, {FAST_USER: None, SLOW_USER: slow.base + "/api/v1"})
            proxies[label] = fleet.proxy(f"embed {label}", database_url=database_url, upstream=fast, keys=keys)
        for server in (fast, slow):
            await fleet.wait_ready(server, "/api/v1/models")
        for proxy in proxies.values():
            await fleet.wait_ready(proxy, "/wattfare/api/v1/models")
        direct = Endpoint(fast.base + "/api/v1/chat/completions", {"authorization": f"Bearer {UPSTREAM_KEY}"})
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            scale = Scale(session, sizes, direct)
            for label, database_url in databases:
                table, found = await users_and_ledger(scale, label, database_url, proxies[label], keys, workdir)
                output += ["", table.text()]
                findings += found
            output += [
                "",
                f"Open streams: {sizes.streams:,} at once through one process, each sent a chunk every second",
            ]
            output.append((await open_streams(scale, proxies["SQLite"], slow, keys)).text())
            output += ["", "Request and reply size"]
            output.append((await request_and_reply_size(scale, proxies["SQLite"], keys)).text())
    finally:
        fleet.stop()
        if postgres_url is not None:
            await drop_postgres(args.postgres_url, postgres_url)
    print(f"\nwattfare_embed scaling bench, {time.monotonic() - started:.0f} s")
    for line in machine.describe():
        print("  " + line)
    print(f"  load average (1/5/15 min): {load_before} before, {machine.load_average()} after")
    print("\n".join(output))
    print("\nStatements whose plan reads a whole big table or sorts (cost grows with rows):")
    print("\n".join(f"  - {finding}" for finding in findings) or "  none")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that it runs")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("WATTFARE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        help="a server and a database beside which the run creates (and drops) <database>_scale_<random>",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wattfare-scale-") as workdir:
        _run(scale_run(args, Path(workdir)))


if __name__ == "__main__":
    main()
