"""``kill -9`` mid-stream, and the upstream or the database cut mid-stream, with two app workers
sharing one database (an SQLite file; PostgreSQL).

The killed worker never settles its streams. Its reservations carry the generation id (noted
within a second of the first byte), so once they are past their TTL the sweeper charges what the
upstream billed, not the whole hold. A cut upstream ends each stream with the provider's error
event, charged as estimated and then reconciled; a cut database sends the settles to each worker's
journal, applied once it is back. After each scenario: exactly one final ledger row per request,
no reservation older than its TTL, the ledger equal to what the upstream charged, nobody past the cap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, require_postgres
from tests.proxy.conftest import FINAL_STATES, HELLO, MINI
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import LedgerEntry, NewConnection
from wattfare_embed.testing.waiting import poll

from .processes import Worker, fake_upstream_process, worker_process
from .tcp_cut import tcp_cut

TTL_SECONDS = 3
CAP = micros_from_usd("0.05")
STREAMS_PER_WORKER = 3


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    require_postgres()
    return POSTGRES_URL


async def _stream(worker: Worker, keys: AppKeys, user: str, started: asyncio.Event) -> bytes:
    received = b""
    headers = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user}
    body = {"model": MINI, "messages": HELLO, "stream": True, "max_tokens": 200}
    try:
        async with (
            httpx2.AsyncClient(timeout=30) as client,
            client.stream("POST", worker.base + "/api/v1/chat/completions", json=body, headers=headers) as response,
        ):
            async for chunk in response.aiter_raw():
                received += chunk
                if received.count(b"data:") >= 3:
                    started.set()
    except httpx2.TransportError:
        pass  # the worker was killed under it
    return received


async def test_kill_9_mid_stream_is_reconciled_from_the_upstreams_bill(
    keys: AppKeys, shared_database: str, tmp_path: Path
) -> None:
    users = [f"u{uuid.uuid4().hex[:8]}" for _ in range(2 * STREAMS_PER_WORKER)]
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(
            fake_upstream_process("--reply-words", "150", "--chunk-delay", "0.04")
        )
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=shared_database,
            upstream_url=upstream,
            settle_journal_dir=tmp_path / "journal",
        )
        await stack.enter_async_context(wf)
        for user in users:
            sealed = wf.credentials.seal("sk-or-v1-" + uuid.uuid4().hex, f"{keys.app_id}/{user}")
            await wf.store.save_connection(NewConnection(keys.app_id, user, "dev", CAP, sealed), int(time.time()))
        environment = {"WATTFARE_RESERVATION_TTL_SECONDS": str(TTL_SECONDS)}
        doomed, survivor = [
            await stack.enter_async_context(worker_process(keys, shared_database, upstream, environment))
            for _ in range(2)
        ]

        started = [asyncio.Event() for _ in users]
        workers = [doomed] * STREAMS_PER_WORKER + [survivor] * STREAMS_PER_WORKER
        streams = [
            asyncio.ensure_future(_stream(worker, keys, user, flag))
            for worker, user, flag in zip(workers, users, started, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in started)), 30)
        await asyncio.sleep(1.5)  # the generation ids are noted on the open reservations meanwhile
        doomed.kill()
        bodies = await asyncio.wait_for(asyncio.gather(*streams), 60)
        assert all(b"[DONE]" in body for body in bodies[STREAMS_PER_WORKER:])  # the other worker's streams finished
        assert not any(b"[DONE]" in body for body in bodies[:STREAMS_PER_WORKER])

        rows = await poll(lambda: _swept_and_reconciled(wf, keys, users), what="the dead worker's holds", timeout=60)

        assert len(rows) == len(users)  # exactly one final row per request
        assert all(row.state in FINAL_STATES for row in rows)
        killed = [row for row in rows if row.state == "expired"]
        assert len(killed) == STREAMS_PER_WORKER
        # Charged what the upstream billed for what it generated before the kill, not the hold.
        assert all(row.cost_source == "reported" and (row.cost or 0) < row.reserved for row in killed)
        await _check_books(wf, keys, users, rows, upstream)


async def _swept_and_reconciled(wf: Wattfare, keys: AppKeys, users: list[str]) -> list[LedgerEntry] | None:
    await wf.proxy.sweep()
    rows = [row for user in users for row in await wf.store.ledger(keys.app_id, user)]
    if any(row.state not in FINAL_STATES or row.reconcile for row in rows):
        return None
    return rows


async def _check_books(wf: Wattfare, keys: AppKeys, users: list[str], rows: list[LedgerEntry], upstream: str) -> None:
    """No reservation past its TTL; the ledger equals the upstream's bill; nobody past the cap."""
    now = int(time.time())
    for user in users:
        record = await wf.store.get_connection(keys.app_id, user, now)
        assert record is not None and record.reserved == 0
        assert record.spent == sum(row.cost or 0 for row in rows if row.app_user_id == user)
        assert record.spent <= record.monthly_cap
    async with httpx2.AsyncClient() as client:
        spend: dict[str, Any] = (await client.get(upstream.removesuffix("/api/v1") + "/_fake/spend")).json()
    billed = [micros_from_usd(Decimal(amount)) for amount in spend["by_key"].values()]
    # Each row is the upstream's figure for its generation, rounded to the micro-dollar once.
    assert abs(sum(row.cost or 0 for row in rows) - sum(billed)) <= len(rows)
    assert sum(billed) > 0


@pytest.mark.parametrize(
    ("cut", "database"),
    [
        ("upstream", "sqlite"),
        pytest.param("database", "postgres", marks=pytest.mark.postgres),
    ],
)
async def test_a_cut_mid_stream_between_workers_and_the_upstream_or_database_loses_nothing(
    keys: AppKeys, tmp_path: Path, cut: str, database: str
) -> None:
    users = [f"u{uuid.uuid4().hex[:8]}" for _ in range(2 * STREAMS_PER_WORKER)]
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(
            fake_upstream_process("--reply-words", "60", "--chunk-delay", "0.04")
        )
        if database == "postgres":
            require_postgres()
            shared = POSTGRES_URL
        else:
            shared = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=shared,
            upstream_url=upstream,
            settle_journal_dir=tmp_path / "test-journal",
        )
        await stack.enter_async_context(wf)
        for user in users:
            sealed = wf.credentials.seal("sk-or-v1-" + uuid.uuid4().hex, f"{keys.app_id}/{user}")
            await wf.store.save_connection(NewConnection(keys.app_id, user, "dev", CAP, sealed), int(time.time()))
        if cut == "upstream":
            port = make_url(upstream).port
            relay = await stack.enter_async_context(tcp_cut(port or 80))
            worker_upstream, worker_database = f"http://127.0.0.1:{relay.port}/api/v1", shared
        else:
            relay = await stack.enter_async_context(tcp_cut(make_url(POSTGRES_URL).port or 5432))
            worker_upstream = upstream
            worker_database = make_url(POSTGRES_URL).set(host="127.0.0.1", port=relay.port).render_as_string(False)
        workers = [
            await stack.enter_async_context(
                worker_process(
                    keys, worker_database, worker_upstream, {"WATTFARE_SETTLE_JOURNAL_DIR": str(tmp_path / f"j{i}")}
                )
            )
            for i in range(2)
        ]
        started = [asyncio.Event() for _ in users]
        streams = [
            asyncio.ensure_future(_stream(workers[i % 2], keys, user, flag))
            for i, (user, flag) in enumerate(zip(users, started, strict=True))
        ]
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in started)), 30)
        relay.cut()
        await asyncio.sleep(1.0)
        if cut == "database":
            await asyncio.sleep(2.0)  # the streams end, and their settles go to the journals
        await relay.restore()
        bodies = await asyncio.wait_for(asyncio.gather(*streams), 60)
        assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies)  # every stream was ended properly

        rows = await poll(lambda: _swept_and_reconciled(wf, keys, users), what="every row final", timeout=60)

        assert len(rows) == len(users)
        await _check_books(wf, keys, users, rows, upstream)
