"""A database outage loses nothing and answers typed: PostgreSQL cut by a TCP relay, and an SQLite
file another process keeps locked past the busy timeout.

Fail closed: with no committed hold nothing is forwarded, and the client gets the typed 503
``unavailable`` with ``x-should-retry: false`` and ``Retry-After``. A call already answered is paid
for: its settle goes to the settle journal (on local disk) and is applied once the store is back,
also by the next process to start after a restart, exactly once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.conftest import POSTGRES_URL, require_postgres
from tests.faults.tcp_cut import TcpCut, tcp_cut
from tests.proxy.conftest import MOUNT, Proxied, error_of, running_proxy, sse_data
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.live_server import serve_in_loop
from wattfare_embed.testing.waiting import poll

REPLY = " ".join(f"word{i}" for i in range(12))


def _through(relay: TcpCut) -> str:
    return make_url(POSTGRES_URL).set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)


@asynccontextmanager
async def _postgres_behind_relay(keys: AppKeys, journal: Path) -> AsyncIterator[tuple[Proxied, TcpCut]]:
    require_postgres()
    async with (
        tcp_cut(make_url(POSTGRES_URL).port or 5432) as relay,
        running_proxy(keys, _through(relay), settle_journal_dir=journal) as proxy,
    ):
        yield proxy, relay
        await relay.restore()  # the fixture's own checks read the store


def _typed_unavailable(response: httpx2.Response) -> None:
    assert error_of(response) == (503, "unavailable")
    assert response.headers["x-should-retry"] == "false"  # the openai SDK must not retry: it could pay twice
    assert int(response.headers["retry-after"]) > 0


def _billed(proxy: Proxied) -> int:
    return sum(micros_from_usd(record.total_cost) for record in proxy.fake.ledger.records)


async def _stream_through_a_cut(proxy: Proxied, user: str, cut: Any) -> bytes:
    """A stream whose store goes away after its reservation, while the upstream is still answering."""
    proxy.fake.reply_text, proxy.fake.chunk_delay = REPLY, 0.05
    received = b""
    async with proxy.stream(user, max_tokens=40) as response:
        async for chunk in response.aiter_raw():
            if not received:
                await cut()
            received += chunk
    assert response.status_code == 200
    await proxy.wf.caught_up(user)  # its settle comes right after the answer: failed, and journaled, by now
    return received


@pytest.mark.postgres
async def test_with_postgres_cut_every_call_is_a_typed_503_and_nothing_is_forwarded(
    keys: AppKeys, user_id: str, tmp_path: Path
) -> None:
    async with _postgres_behind_relay(keys, tmp_path / "journal") as (proxy, relay):
        await proxy.connect(user_id)
        relay.cut()

        calls = await asyncio.gather(*(proxy.chat(user_id, max_tokens=10) for _ in range(6)))
        status = await proxy.http.get("/api/v1/status", params={"appUserId": user_id}, headers=proxy.headers(None))

        for response in [*calls, status]:
            _typed_unavailable(response)
        assert proxy.upstream_calls() == []  # fail closed: no hold, no call
        await relay.restore()
        ok = await poll(lambda: _answered(proxy, user_id), what="a call to pass once the database is back")
        assert ok.status_code == 200
        [row] = await proxy.settled(user_id, 1)
        assert row.cost == _billed(proxy)
        await poll(lambda: _journal_empty(proxy), what="the releases of the refused calls to be applied")


async def _answered(proxy: Proxied, user: str) -> httpx2.Response | None:
    response = await proxy.chat(user, max_tokens=10)
    return response if response.status_code == 200 else None


async def _journal_empty(proxy: Proxied) -> bool | None:
    directory = proxy.wf.settings.settle_journal_dir
    assert directory is not None
    files = list(directory.glob("*.json")) if directory.is_dir() else []
    return True if not files and proxy.wf.proxy.journal.pending == 0 else None


@pytest.mark.postgres
async def test_a_settle_postgres_cannot_take_is_journaled_and_applied_once_it_is_back(
    keys: AppKeys, user_id: str, tmp_path: Path
) -> None:
    async with _postgres_behind_relay(keys, tmp_path / "journal") as (proxy, relay):
        await proxy.connect(user_id)

        async def cut() -> None:
            relay.cut()

        received = await _stream_through_a_cut(proxy, user_id, cut)

        assert sse_data(received)[-1] == "[DONE]"  # the answer was paid for, so it went through
        assert list((tmp_path / "journal").glob("*.json")), "the settle is kept on disk"
        await relay.restore()
        [row] = await proxy.settled(user_id, 1)
        assert (row.state, row.cost_source, row.cost) == ("settled", "reported", _billed(proxy))
        assert (await proxy.connection(user_id)).spent == row.cost
        await poll(lambda: _journal_empty(proxy), what="the journal to be emptied")


@pytest.mark.postgres
async def test_a_journaled_settle_survives_a_restart_and_is_charged_once(
    keys: AppKeys, user_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    require_postgres()
    async with tcp_cut(make_url(POSTGRES_URL).port or 5432) as relay:
        async with running_proxy(keys, _through(relay), settle_journal_dir=journal) as proxy:
            await proxy.connect(user_id)

            async def cut() -> None:
                relay.cut()

            await _stream_through_a_cut(proxy, user_id, cut)
            billed = _billed(proxy)
            kept = list(journal.glob("*.json"))
            assert len(kept) == 1
            await proxy.wf.shutdown()  # the process stops while the database is still down
            await relay.restore()
            proxy.users.clear()  # checked below, after the restart
        # Two processes start on the same journal: the entry is applied, and charged once.
        restarted = [
            Wattfare(
                secret_key=keys.secret_key,
                publishable_key=keys.publishable_key,
                database_url=POSTGRES_URL,
                upstream_url="http://127.0.0.1:9/api/v1",
                settle_journal_dir=journal,
            )
            for _ in range(2)
        ]
        try:
            await asyncio.gather(*(wf.startup() for wf in restarted))

            async def applied() -> list[Any] | None:
                rows = await restarted[0].store.ledger(keys.app_id, user_id)
                return rows if rows and rows[0].state == "settled" and not list(journal.glob("*.json")) else None

            [row] = await poll(applied, what="the journaled settle to be applied after the restart")
            assert (row.cost_source, row.cost) == ("reported", billed)
            record = await restarted[0].store.get_connection(keys.app_id, user_id, int(time.time()))
            assert record is not None and (record.spent, record.reserved) == (billed, 0)
        finally:
            for wf in restarted:
                await wf.shutdown()


# -- SQLite: another process holds the write lock past the busy timeout ---------------------------


@asynccontextmanager
async def _locked(database: Path) -> AsyncIterator[None]:
    """Another process holds the SQLite file's write lock until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(database),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert (await asyncio.to_thread(holder.stdout.readline)).strip() == b"locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


async def test_with_the_sqlite_file_locked_past_the_timeout_calls_are_typed_503s_and_settles_kept(
    keys: AppKeys, user_id: str, tmp_path: Path
) -> None:
    database = tmp_path / "wattfare.db"
    async with running_proxy(keys, f"sqlite+aiosqlite:///{database}") as proxy:
        await proxy.connect(user_id)
        async with _locked(database):
            refused = await proxy.chat(user_id, max_tokens=10)
        _typed_unavailable(refused)
        assert proxy.upstream_calls() == []

        lock: list[Any] = []

        async def lock_it() -> None:
            lock.append(_locked(database))
            await lock[0].__aenter__()

        received = await _stream_through_a_cut(proxy, user_id, lock_it)
        assert sse_data(received)[-1] == "[DONE]"  # answered, then the settle kept past the busy timeout
        assert list(Path(str(database) + ".settle-journal").glob("*.json")), "the settle is kept beside the file"
        await lock[0].__aexit__(None, None, None)
        [row] = await proxy.settled(user_id, 1)  # the refused call never held anything
        assert (row.state, row.cost_source, row.cost) == ("settled", "reported", _billed(proxy))
        assert (await proxy.connection(user_id)).spent == row.cost
        await poll(lambda: _journal_empty(proxy), what="the journal to be emptied")


async def test_an_in_process_app_with_its_store_down_at_start_up_answers_typed(keys: AppKeys, tmp_path: Path) -> None:
    wf = Wattfare(
        secret_key=keys.secret_key,
        publishable_key=keys.publishable_key,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'wattfare.db'}",
    )
    async with (
        serve_in_loop(Starlette(routes=[Mount(MOUNT, app=wf)])) as base,
        httpx2.AsyncClient(base_url=base + MOUNT) as http,
    ):
        response = await http.post(
            "/api/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": []},
            headers={"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": "u1"},
        )
    _typed_unavailable(response)
