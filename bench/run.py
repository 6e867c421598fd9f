"""What the metered proxy adds, against calling the same fake upstream directly, in one run.

    python -m bench.run                 # make bench: direct, the embed on SQLite and on PostgreSQL
    python -m bench.run --litellm PATH  # make bench-peers: LiteLLM's proxy in the same table
    python -m bench.run --quick         # a few requests of each kind, to check the bench works
    python -m bench.run --telemetry     # and the embed on SQLite with all its telemetry on, beside it off

Processes, all on loopback: the fake OpenRouter (and a second one that pauses 50 ms between
stream chunks), a forwarding-only proxy on the same server and client (``bench.floor_proxy``: the
floor any Python proxy of this shape stands on), one proxy process per database (uvicorn, the
embed mounted in Starlette), the peer if asked for, and this load generator (aiohttp on uvloop).
Every figure is printed beside the direct figure of the same run, because the machine's speed
moves between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from wattfare_embed import AppKeys, new_key_pair

from . import machine, procfs
from .load import Endpoint, chat_body, latencies, timed_call
from .measures import Plan, Target, measure, warm_up
from .peers import SLOW_MODEL, LiteLLM, non_loopback_peers
from .servers import UPSTREAM_KEY, Fleet, Server, connect_users, drop_postgres, fresh_postgres, postgres_version
from .summary import DIRECT, FLOOR, summarize

__all__ = ["main"]

FAST_USER, SLOW_USER = "bench-user", "bench-slow-user"
TELEMETRY_TARGETS = (("SQLite, telemetry on", "all"), ("SQLite, telemetry on, 1 in 10 traced", "all-sampled"))
PLANS = {
    "full": Plan(
        rounds=7, requests=300, seconds=2.0, concurrency=32, stream_rounds=3, long_streams=8, gap_streams=3, warmup=150
    ),
    "quick": Plan(
        rounds=2, requests=10, seconds=0.3, concurrency=8, stream_rounds=1, long_streams=1, gap_streams=1, warmup=5
    ),
}


def _embed_target(
    name: str, proxy: Server, keys: AppKeys, database_pids: Callable[[], list[int]] | None = None
) -> Target:
    url = proxy.base + "/wattfare/api/v1/chat/completions"

    def as_user(user: str) -> Endpoint:
        return Endpoint(url, {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user})

    return Target(name, as_user(FAST_USER), as_user(SLOW_USER), lambda: [proxy.pid], database_pids or (lambda: []))


async def _peer_calls_seen(fake: Server) -> int:
    """Chat completions the fake received from anything but aiohttp (the load generator and the embed)."""
    async with aiohttp.ClientSession() as session, session.get(fake.base + "/_fake/requests") as answer:
        received = (await answer.json())["requests"]
    return sum(
        1
        for request in received
        if request["path"] == "/api/v1/chat/completions" and "aiohttp" not in request["headers"].get("user-agent", "")
    )


async def _checked_peer_warm_up(session: aiohttp.ClientSession, target: Target, fake: Server, plan: Plan) -> None:
    """Warm the peer up, and make sure every call it answered was really made to our fake."""
    before = await _peer_calls_seen(fake)
    body = chat_body(target.fast, stream=False)
    calls = 20
    await latencies(lambda: timed_call(session, target.fast, body), calls)
    reached = await _peer_calls_seen(fake) - before
    if reached != calls:
        raise RuntimeError(f"{target.name} answered {calls} calls but the fake upstream saw {reached}")
    await warm_up(session, target, plan)


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    plan = PLANS["quick" if args.quick else "full"]
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    started, load_before = time.monotonic(), machine.load_average()
    keys = new_key_pair()
    fleet = Fleet(workdir)
    postgres_url: str | None = None
    try:
        fast = fleet.fake_upstream("fake upstream")
        slow = fleet.fake_upstream("slow fake upstream", chunk_delay=0.05)
        floor = fleet.floor("floor proxy", upstream=fast, slow=slow)
        peer = LiteLLM(Path(args.litellm).absolute()) if args.litellm else None
        if peer is not None:
            peer.start(fleet, workdir, fast, slow)  # the slowest to start: first
        databases = [("SQLite", f"sqlite+aiosqlite:///{workdir / 'bench.db'}")]
        if not args.no_postgres:
            postgres_url = await fresh_postgres(args.postgres_url, "bench")
            databases.append(("PostgreSQL", postgres_url))
        users = {FAST_USER: None, SLOW_USER: slow.base + "/api/v1"}
        proxies: list[tuple[str, Server]] = []
        for label, database_url in databases:
            await connect_users(database_url, keys, users)
            proxies.append((label, fleet.proxy(f"embed {label}", database_url=database_url, upstream=fast, keys=keys)))
        if args.telemetry:
            # The same embed on SQLite (a database file of its own), reporting everything (bench.telemetry).
            for label, mode in TELEMETRY_TARGETS:
                database_url = f"sqlite+aiosqlite:///{workdir / f'bench-{mode}.db'}"
                await connect_users(database_url, keys, users)
                proxy = fleet.proxy(
                    f"embed {label}", database_url=database_url, upstream=fast, keys=keys, telemetry=mode
                )
                proxies.append((label, proxy))
        for server in (fast, slow):
            await fleet.wait_ready(server, "/api/v1/models")
        await fleet.wait_ready(floor, "/fast/models")
        for _label, proxy in proxies:
            await fleet.wait_ready(proxy, "/wattfare/api/v1/models")

        direct_headers = {"authorization": f"Bearer {UPSTREAM_KEY}"}
        targets = [
            Target(
                DIRECT,
                Endpoint(fast.base + "/api/v1/chat/completions", direct_headers),
                Endpoint(slow.base + "/api/v1/chat/completions", direct_headers),
                lambda: [fast.pid],
            ),
            Target(
                FLOOR,
                Endpoint(floor.base + "/fast/chat/completions", direct_headers),
                Endpoint(floor.base + "/slow/chat/completions", direct_headers),
                lambda: [floor.pid],
            ),
        ]
        for label, proxy in proxies:
            database_pids = None
            if label == "PostgreSQL" and postgres_url is not None:
                database_pids = functools.partial(procfs.postgres_backends, postgres_url.rsplit("/", 1)[-1])
            targets.append(_embed_target(f"embed, {label}", proxy, keys, database_pids))
        peer_name = None
        if peer is not None and peer.server is not None:
            await fleet.wait_ready(peer.server, "/health/liveliness", timeout=120)
            peer_name = f"LiteLLM {peer.version()}"
            server = peer.server
            targets.append(Target(peer_name, peer.endpoint(), peer.endpoint(SLOW_MODEL), lambda: [server.pid]))

        proxy_pids = [pid for target in targets[1:] for pid in target.server_pids()]
        pinning = procfs.pin_apart([fast.pid, slow.pid], proxy_pids) if args.pin else "not pinned"

        # Idle connections are dropped before uvicorn's 5 s keep-alive closes them from its side, so a
        # reused one never meets a close already under way ("Cannot write to closing transport").
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            for target in targets:
                if target.name == peer_name:
                    await _checked_peer_warm_up(session, target, fast, plan)
                else:
                    await warm_up(session, target, plan)
            results = await measure(session, targets, plan)
        outside = non_loopback_peers(peer.server.pid) if peer is not None and peer.server is not None else []
        if outside:
            raise RuntimeError(f"{peer_name} held connections off this machine: {outside}")
        version = await postgres_version(postgres_url) if postgres_url else None
    finally:
        fleet.stop()
        if postgres_url is not None:
            await drop_postgres(args.postgres_url, postgres_url)

    table = summarize(
        results,
        targets,
        peer=peer_name,
        concurrency=plan.concurrency,
        telemetry_baseline="embed, SQLite" if args.telemetry else None,
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nwattfare_embed bench, {when}, {time.monotonic() - started:.0f} s")
    for line in machine.describe(version):
        print("  " + line)
    print(f"  load average (1/5/15 min): {load_before} before, {machine.load_average()} after")
    print(f"  CPUs: {pinning}")
    print(
        f"  method: {plan.rounds} rounds, target order rotated each round; per target and round {plan.requests} "
        f"requests at concurrency 1 (each kind), {plan.seconds:g} s at concurrency {plan.concurrency}, "
        f"{plan.long_streams} long and short streams in {plan.stream_rounds} rounds; "
        f"{plan.warmup} warm-up requests of each kind first"
    )
    if peer_name:
        print(f"  {peer_name}: one worker, no database, the same fake upstream; checked: every call reached the fake,")
        print("  no connection off this machine")
    print()
    print(table.text())
    if args.markdown:
        print("\n" + table.markdown())


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that the bench works")
    parser.add_argument("--rounds", type=int, help="rounds of every measure (default 7, quick 2)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("WATTFARE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        help="a server and a database beside which the run creates (and drops) <database>_bench_<random>",
    )
    parser.add_argument("--litellm", metavar="PATH", help="LiteLLM's `litellm` command: add its proxy to the table")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the proxies on one CPU, the load generator and the fake upstreams on the others",
    )
    parser.add_argument(
        "--telemetry", action="store_true", help="add the embed on SQLite with every kind of telemetry on"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wattfare-bench-") as workdir:
        _run(bench(args, Path(workdir)))


if __name__ == "__main__":
    main()
