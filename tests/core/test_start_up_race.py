"""Four processes starting together on a fresh PostgreSQL database all come up; no first request fails.

Each process is a real uvicorn server. A mounted embed starts on its first request, so the four
are all listening before any of them migrates, and the first requests then reach all four at once;
the consent domain starts with uvicorn's lifespan, so its four race as they come up. Without the
migration lock both fail (duplicate type names, a half-made table, a 500 or a process that exits).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx2
import pytest
from sqlalchemy import Connection, text

from tests.core.databases import fresh_postgres, on
from wattfare_embed import AppKeys, SqlStore
from wattfare_embed.consent._protocol import DISCOVERY_PATH
from wattfare_embed.consent_domain.revisions import migrations as domain_migrations
from wattfare_embed.store import _migrations as migrating
from wattfare_embed.store import migrations as embed_migrations
from wattfare_embed.store._migrations import Migrations
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import free_port, serve_in_loop

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 4


@contextmanager
def _processes(commands: list[list[str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for command in commands
    ]
    try:
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr:
                process.stderr.close()


async def _until_listening(ports: list[int], processes: list[subprocess.Popen[bytes]]) -> None:
    """A TCP connect, not a request: a request would start the app before the others."""
    deadline = time.monotonic() + 90
    waiting = set(ports)
    while waiting:
        for port, process in zip(ports, processes, strict=True):
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"a process exited before listening: {error}")
            if port not in waiting:
                continue
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            writer.close()
            await writer.wait_closed()
            waiting.discard(port)
        assert time.monotonic() < deadline, f"ports {sorted(waiting)} never listened"
        await asyncio.sleep(0.05)


def _version_rows(migrations: Migrations) -> object:
    def read(db: Connection) -> list[str]:
        return list(db.execute(text(f"SELECT version_num FROM {migrations.version_table}")).scalars())

    return read


async def _first_requests(urls: list[tuple[str, dict[str, str]]]) -> list[int]:
    async with httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=50)) as client:

        async def one(url: str, headers: dict[str, str]) -> int:
            return (await client.get(url, headers=headers)).status_code

        return await asyncio.gather(*(one(url, headers) for url, headers in urls))


async def test_four_embed_processes_starting_together_on_a_fresh_database_all_answer(keys: AppKeys) -> None:
    async with fresh_postgres("race") as database_url, serve_in_loop(FakeOpenRouter()) as fake_url:
        ports = [free_port() for _ in range(PROCESSES)]
        commands = [
            [
                sys.executable, "-m", "bench.serve_proxy", "--port", str(port), "--database-url", database_url,
                "--upstream-url", f"{fake_url}/api/v1", "--secret-key", keys.secret_key,
                "--publishable-key", keys.publishable_key,
            ]
            for port in ports
        ]  # fmt: skip
        with _processes(commands) as processes:
            await _until_listening(ports, processes)
            server = {"authorization": f"Bearer {keys.secret_key}"}
            requests = [
                (f"http://127.0.0.1:{port}/wattfare/api/v1/{path}", server)
                for port in ports
                for path in ("status?appUserId=alice", "status?appUserId=bob", "models")
            ]
            statuses = await _first_requests(requests)
        assert statuses == [200] * len(requests)
        assert await on(database_url, _version_rows(embed_migrations)) == [embed_migrations.head]


async def test_four_consent_domain_processes_starting_together_on_a_fresh_database_all_answer() -> None:
    async with fresh_postgres("race") as database_url:
        ports = [free_port() for _ in range(PROCESSES)]
        commands = [
            [
                sys.executable, "-m", "wattfare_embed", "consent-domain", "serve", "--port", str(port),
                "--database-url", database_url,
            ]
            for port in ports
        ]  # fmt: skip
        with _processes(commands) as processes:
            await _until_listening(ports, processes)
            requests = [
                (f"http://127.0.0.1:{port}{path}", {})
                for port in ports
                for path in (DISCOVERY_PATH, "/login", "/login")
            ]
            statuses = await _first_requests(requests)
        assert statuses == [200] * len(requests)
        assert await on(database_url, _version_rows(domain_migrations)) == [domain_migrations.head]


async def test_waiting_for_another_processs_migration_has_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrating, "LOCK_TIMEOUT_SECONDS", 1)
    async with fresh_postgres("race") as database_url:
        url = asyncpg_url(database_url)
        assert url is not None
        other = await asyncpg.connect(**_connect_kwargs(url))  # a process stuck half way through migrating
        try:
            await other.execute(f"SELECT pg_advisory_lock({embed_migrations.lock_key})")
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="another process has been migrating the wattfare tables"):
                await SqlStore(database_url).open()
            assert time.monotonic() - started < 30
            await other.execute(f"SELECT pg_advisory_unlock({embed_migrations.lock_key})")
            store = SqlStore(database_url)  # once it is done, start-up goes ahead
            await store.open()
            await store.close()
        finally:
            await other.close()
