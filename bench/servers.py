"""The processes a run measures: the fake upstream, proxy processes, a peer; and the databases they use.

Each server is its own process with its own log file, so a server that fails to start says why.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import make_url

from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.store import NewConnection
from wattfare_embed.testing.live_server import free_port

__all__ = [
    "Fleet",
    "Server",
    "connect_users",
    "drop_postgres",
    "fresh_postgres",
    "postgres_version",
]

# The cap every benchmark user connects with: far more than a run can spend.
BENCH_CAP = 900_000_000
UPSTREAM_KEY = "sk-or-v1-bench"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Fleet:
    """Starts servers, waits until each answers, and stops every one of them at the end."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self.servers: list[Server] = []

    def spawn(self, name: str, argv: list[str], *, port: int, env: dict[str, str] | None = None) -> Server:
        log = self._workdir / f"{name.replace(' ', '-')}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=self._workdir)
        server = Server(name, process, log, port)
        self.servers.append(server)
        return server

    def fake_upstream(self, name: str, *, chunk_delay: float = 0.0) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "wattfare_embed.testing.fake_openrouter", "--port", str(port)]
        if chunk_delay:
            argv += ["--chunk-delay", str(chunk_delay)]
        return self.spawn(name, argv, port=port)

    def proxy(
        self, name: str, *, database_url: str, upstream: Server, keys: AppKeys, telemetry: str | None = None
    ) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "bench.serve_proxy", "--port", str(port), "--database-url", database_url]
        argv += ["--upstream-url", upstream.base + "/api/v1", "--secret-key", keys.secret_key]
        argv += ["--publishable-key", keys.publishable_key]
        if telemetry:
            argv += ["--telemetry", telemetry]
        # Run from the work directory, so the bench package must be found through the path.
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        return self.spawn(name, argv, port=port, env=env)

    def floor(self, name: str, *, upstream: Server, slow: Server) -> Server:
        """The forwarding-only proxy (``bench.floor_proxy``): what any Python proxy of this shape costs."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.floor_proxy", "--port", str(port)]
        argv += ["--upstream-url", upstream.base + "/api/v1", "--slow-upstream-url", slow.base + "/api/v1"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        return self.spawn(name, argv, port=port, env=env)

    async def wait_ready(self, server: Server, path: str, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} exited at start-up:\n{server.log_tail()}")
                try:
                    async with session.get(server.base + path, timeout=aiohttp.ClientTimeout(total=2)) as answer:
                        if answer.status < 500:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{server.name} did not answer within {timeout:.0f} s:\n{server.log_tail()}")

    def stop(self) -> None:
        for server in self.servers:
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.servers:
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(10)


async def connect_users(database_url: str, keys: AppKeys, users: dict[str, str | None]) -> None:
    """Connect each user (id → its upstream URL, None for the default) with a cap no run reaches."""
    wf = Wattfare(secret_key=keys.secret_key, publishable_key=keys.publishable_key, database_url=database_url)
    async with wf:
        for user, upstream_url in users.items():
            sealed = wf.credentials.seal(UPSTREAM_KEY, f"{keys.app_id}/{user}")
            connection = NewConnection(keys.app_id, user, "dev", BENCH_CAP, sealed, upstream_url=upstream_url)
            await wf.store.save_connection(connection, int(time.time()))


def _asyncpg_args(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {
        "user": parsed.username,
        "password": parsed.password,
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "database": parsed.database,
    }


async def fresh_postgres(base_url: str, suffix: str) -> str:
    """A new, empty database named ``<base database>_<suffix>_<random>`` beside the base one; its URL.

    A run never reuses the rows of an earlier run (a growing ledger would slow later runs), and two
    runs at once (a test and a bench) never share one."""
    import asyncpg

    name = f"{make_url(base_url).database}_{suffix}_{secrets.token_hex(3)}"
    connection = await asyncpg.connect(**_asyncpg_args(base_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres(base_url: str, url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(**_asyncpg_args(base_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await connection.close()


async def postgres_version(url: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(**_asyncpg_args(url))
    try:
        version: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return version.split()[0]
