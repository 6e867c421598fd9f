"""Where the proxy's CPU goes under load: py-spy samples of one proxy process, grouped by layer.

    python -m bench.profile            # make bench-profile (installs py-spy): SQLite and PostgreSQL
    python -m bench.profile --quick    # a few seconds each

The fake upstream and one proxy process per database are loaded at concurrency 16, half the
requests streaming, while py-spy samples the proxy from outside (no change to its code). Each
sample is put in the innermost layer it is in (store, SQLAlchemy, aiohttp, Starlette, uvicorn,
json, money…); a layer's share times the proxy's CPU per request (from /proc, same window) is
what it costs a request. The raw stacks are kept in bench/profiles/ (ignored by git) for
flame-graph tools; what each step of a request costs in all is printed as inclusive shares.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from wattfare_embed import new_key_pair

from . import procfs
from .load import Endpoint, chat_body, throughput, timed_call
from .report import Table
from .run import FAST_USER, SLOW_USER, _run
from .servers import Fleet, Server, connect_users, drop_postgres, fresh_postgres

__all__ = ["EVENT_LOOP", "IDLE_LEAVES", "LAYERS", "OTHER", "classify", "main", "parse_raw"]

PROFILES = Path(__file__).resolve().parent / "profiles"

# Innermost first: a sample belongs to the first layer found walking from its leaf to its root.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # SQLAlchemy's do_execute / do_commit are the calls into the C driver: their time is the driver's.
    ("database driver: sqlite3 / asyncpg", ("sqlite3/", "asyncpg/", "DefaultDialect.do_", "do_execute")),
    ("SQLAlchemy (executing the store's statements)", ("sqlalchemy/",)),
    ("store: our transaction code", ("wattfare_embed/store/",)),
    ("money: Decimal", ("decimal.py", "_pydecimal", "wattfare_embed/money.py")),
    ("credential decryption (AES-GCM)", ("cryptography/", "wattfare_embed/crypto.py")),
    ("json encode / decode", ("json/",)),
    ("hmac of the user id", ("hmac.py",)),
    ("aiohttp: the upstream request and its reply", ("aiohttp/", "multidict/", "yarl/")),
    ("Starlette: routing, middleware, Headers", ("starlette/",)),
    ("uvicorn + httptools: reading requests, writing replies", ("uvicorn/", "httptools/")),
    ("metering: pricing, admission, meter", ("wattfare_embed/metering/",)),
    ("proxy and embed glue", ("wattfare_embed/",)),
    ("asyncio: tasks, futures, shield", ("asyncio/",)),
]
OTHER = "the rest"
# A sample whose innermost Python frame is the loop runner is time in the loop's own C code
# (uvloop: polling, callbacks, socket reads and writes not attributed to a caller).
EVENT_LOOP = "event loop itself (uvloop, in C)"

# Steps of a request: a sample counts for every step whose function is on its stack.
STEPS: list[tuple[str, str]] = [
    ("authenticate (model_caller)", "model_caller ("),
    ("read and parse the body", "parse_request ("),
    ("price the request (PriceBook.for_request)", "PriceBook.for_request ("),
    ("plan the hold (plan_admission)", "plan_admission ("),
    ("reserve (its own task: Proxy._reserve)", "Proxy._reserve ("),
    ("build the upstream request (clamp, hmac, credential, json)", "Proxy._upstream_request ("),
    ("send upstream and read its head (aiohttp)", "ClientSession._request ("),
    ("relay a non-streamed body", "Proxy._relay_body ("),
    ("relay a stream", "Proxy._relay_stream ("),
    ("meter the reply (ResponseMeter)", "ResponseMeter."),
    ("settle (its own task: Proxy._settle)", "Proxy._settle ("),
    ("store transactions (SqlStore.reserve and .settle)", "SqlStore."),
    ("money conversion (micros_from_usd)", "micros_from_usd ("),
    ("Proxy._metered's task (reserve and settle run in their own)", "Proxy._metered ("),
]


# A thread blocked on a lock or a queue with the GIL released, which py-spy still samples as
# running: the SQLite checkpoint thread between checkpoints (``Event.wait``) showed as 12-33 % of
# the samples, and the writer thread waiting for work would too. Waiting is not CPU.
IDLE_LEAVES = ("Condition.wait (threading.py", "_worker (concurrent/futures/thread.py")


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) output: ``frame;frame;…;leaf count`` per line, root first, without
    the samples of threads waiting (``IDLE_LEAVES``)."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = tuple(stack.split(";"))
            if not frames[-1].startswith(IDLE_LEAVES):
                stacks[frames] += int(count)
    return stacks


def classify(stack: tuple[str, ...]) -> str:
    if stack and stack[-1].startswith("Runner.run (asyncio/runners.py"):
        return EVENT_LOOP
    for frame in reversed(stack):
        for layer, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return layer
    return OTHER


def _tables(stacks: Counter[tuple[str, ...]], cpu_per_request: float, label: str) -> str:
    total = sum(stacks.values())
    layers: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for stack, count in stacks.items():
        layers[classify(stack)] += count
        for step, marker in STEPS:
            if any(marker in frame for frame in stack):
                steps[step] += count
        for frame in set(stack):
            inclusive[frame] += count
        leaves[stack[-1]] += count

    def row(table: Table, name: str, count: int) -> None:
        share = count / total
        table.add(name, {"share": f"{share:.1%}", "µs a request": f"{share * cpu_per_request * 1e6:.0f}"})

    by_layer = Table(columns=["share", "µs a request"], title=f"{label}: innermost layer")
    for layer, count in layers.most_common():
        row(by_layer, layer, count)
    by_step = Table(columns=["share", "µs a request"], title=f"{label}: step of the request (inclusive)")
    for step, _ in STEPS:
        row(by_step, step, steps[step])
    top = Table(columns=["share", "µs a request"], title=f"{label}: functions, inclusive (top 25)")
    for frame, count in inclusive.most_common(40)[:25]:
        row(top, frame[:110], count)
    own = Table(columns=["share", "µs a request"], title=f"{label}: functions, self (top 15)")
    for frame, count in leaves.most_common(15):
        row(own, frame[:110], count)
    header = f"{label}: {total} samples; proxy CPU {cpu_per_request * 1e6:.0f} µs a request (from /proc)"
    return "\n\n".join([header, by_layer.text(), by_step.text(), top.text(), own.text()])


async def _profile_one(
    session: aiohttp.ClientSession,
    proxy: Server,
    endpoint: Endpoint,
    stream_endpoint: Endpoint,
    seconds: float,
    label: str,
) -> str:
    plain, streamed = chat_body(endpoint, stream=False), chat_body(stream_endpoint, stream=True)
    turn = 0

    async def mixed() -> float:
        nonlocal turn
        turn += 1
        if turn % 2:
            return await timed_call(session, endpoint, plain)
        return await timed_call(session, stream_endpoint, streamed)

    await throughput(mixed, min(3.0, seconds), 16)  # warm-up
    PROFILES.mkdir(exist_ok=True)
    output = PROFILES / f"{label.lower()}-{int(time.time())}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy), "record", "--pid", str(proxy.pid), "--duration", str(int(seconds)), "--rate", "250"]
    command += ["--format", "raw", "--nolineno", "--output", str(output)]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    await asyncio.sleep(1.0)  # py-spy attaches
    cpu_before = procfs.cpu_seconds([proxy.pid])
    done, _elapsed = await throughput(functools.partial(mixed), seconds - 1.5, 16)
    cpu_per_request = (procfs.cpu_seconds([proxy.pid]) - cpu_before) / done
    _, errors = recorder.communicate(timeout=seconds + 60)
    if recorder.returncode != 0:
        raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")
    return _tables(parse_raw(output.read_text()), cpu_per_request, label) + f"\n\n(raw stacks: {output})"


async def profile(args: argparse.Namespace, workdir: Path) -> None:
    seconds = 4.0 if args.quick else 20.0
    keys = new_key_pair()
    fleet = Fleet(workdir)
    postgres_url: str | None = None
    reports: list[str] = []
    try:
        fast = fleet.fake_upstream("fake upstream")
        databases = [("SQLite", f"sqlite+aiosqlite:///{workdir / 'profile.db'}")]
        if not args.no_postgres:
            postgres_url = await fresh_postgres(args.postgres_url, "profile")
            databases.append(("PostgreSQL", postgres_url))
        proxies = []
        for label, database_url in databases:
            await connect_users(database_url, keys, {FAST_USER: None, SLOW_USER: None})
            proxies.append((label, fleet.proxy(f"embed {label}", database_url=database_url, upstream=fast, keys=keys)))
        await fleet.wait_ready(fast, "/api/v1/models")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for label, proxy in proxies:
                await fleet.wait_ready(proxy, "/wattfare/api/v1/models")
                url = proxy.base + "/wattfare/api/v1/chat/completions"

                def endpoint(user: str, url: str = url) -> Endpoint:
                    return Endpoint(url, {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user})

                report = await _profile_one(session, proxy, endpoint(FAST_USER), endpoint(SLOW_USER), seconds, label)
                reports.append(report)
    finally:
        fleet.stop()
        if postgres_url is not None:
            await drop_postgres(args.postgres_url, postgres_url)
    print("\n\n".join(reports))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("WATTFARE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        help="a server and a database beside which the run creates (and drops) <database>_profile_<random>",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wattfare-profile-") as workdir:
        _run(profile(args, Path(workdir)))


if __name__ == "__main__":
    main()
