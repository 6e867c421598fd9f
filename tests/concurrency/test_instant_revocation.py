"""On PostgreSQL a revoke in one process reaches the others at once (LISTEN/NOTIFY), not by polling.

The timing test runs two uvicorn worker processes on one database: a stream is open on worker B,
the revoke is handled by worker A, and the stream's cut-off event must arrive within 100 ms of
the revoke's answer. The proxy's fallback poll re-reads every two seconds, so it could meet
that by luck about one time in twenty; every one of several trials has to.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx2
import pytest
from sqlalchemy import Connection

from tests.concurrency.workers import running_worker
from tests.conftest import POSTGRES_URL, require_postgres
from tests.core.databases import fresh_postgres
from wattfare_embed import AppKeys, SqlStore, Wattfare
from wattfare_embed.store import ConnectionState, NewConnection
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url
from wattfare_embed.store._revocations import notify_connection_ended
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve_in_loop
from wattfare_embed.testing.waiting import poll

pytestmark = pytest.mark.postgres

PROMISE_SECONDS = 0.1
TRIALS = 4


async def _until(condition: Callable[[], bool], what: str) -> None:
    async def check() -> bool | None:
        return True if condition() else None

    await poll(check, what=what)


class Heard:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, connection_id: str) -> None:
        self.ids.append(connection_id)


@asynccontextmanager
async def _listening_store(database_url: str, heard: Heard) -> AsyncIterator[SqlStore]:
    store = SqlStore(database_url)
    store.listen_for_revocations(heard)
    await store.open()
    try:
        await _until(lambda: store.hears_revocations, "the store listening for revocations")
        yield store
    finally:
        await store.close()


async def _connection(store: SqlStore, keys: AppKeys, user: str) -> str:
    record = await store.save_connection(NewConnection(keys.app_id, user, "dev", 1_000_000, "v1.sealed"), 0)
    return record.id


async def test_a_committed_revoke_is_heard_and_a_rolled_back_one_never(keys: AppKeys, user_id: str) -> None:
    require_postgres()
    heard = Heard()
    async with _listening_store(POSTGRES_URL, heard) as listener, _listening_store(POSTGRES_URL, Heard()) as other:
        connection_id = await _connection(other, keys, user_id)

        def revoke_then_fail(db: Connection) -> None:
            notify_connection_ended(db, connection_id)
            raise RuntimeError("the revoking transaction failed")

        with pytest.raises(RuntimeError):
            await other._run_handle().run(revoke_then_fail)
        await asyncio.sleep(0.5)
        assert connection_id not in heard.ids, "a rolled-back revoke was announced"

        now = int(time.time())
        await other.set_status(keys.app_id, user_id, ConnectionState.FUNDING_INVALID, now, drop_credential=False)
        await _until(lambda: connection_id in heard.ids, "the revoke heard by the other store")
        assert listener.hears_revocations


async def test_the_listener_reconnects_after_its_connection_is_killed(keys: AppKeys, user_id: str) -> None:
    async with fresh_postgres("listen") as database_url:
        heard = Heard()
        async with _listening_store(database_url, heard) as listener, _listening_store(database_url, Heard()) as other:
            admin_url = asyncpg_url(database_url)
            assert admin_url is not None
            admin = await asyncpg.connect(**_connect_kwargs(admin_url))
            try:
                killed = await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            finally:
                await admin.close()
            assert len(killed) == 2  # both stores' listeners
            await _until(lambda: not listener.hears_revocations, "the lost listener noticed")
            await _until(lambda: listener.hears_revocations, "the listener back")
            connection_id = await _connection(other, keys, user_id)
            await other.set_status(
                keys.app_id, user_id, ConnectionState.REVOKED, int(time.time()), drop_credential=True
            )
            await _until(lambda: connection_id in heard.ids, "a revoke heard after reconnecting")


# -- two worker processes -----------------------------------------------------------------------


def _listening(health: dict[str, Any]) -> bool:
    return bool(health["status"] == "ok" and health["revocations"] == "instant")


async def test_a_revoke_in_one_worker_stops_a_stream_in_another_within_100_ms(keys: AppKeys) -> None:
    require_postgres()
    fake = FakeOpenRouter(reply_text=" ".join(["tick"] * 400), chunk_delay=0.05)  # a twenty-second stream
    async with serve_in_loop(fake) as fake_url:
        upstream = f"{fake_url}/api/v1"
        wf = Wattfare(secret_key=keys.secret_key, publishable_key=keys.publishable_key, database_url=POSTGRES_URL)
        async with (
            wf,
            running_worker(keys, POSTGRES_URL, upstream, ready=_listening) as worker_a,
            running_worker(keys, POSTGRES_URL, upstream, ready=_listening) as worker_b,
        ):
            lags = []
            async with httpx2.AsyncClient(timeout=30) as client:
                for trial in range(TRIALS):
                    user = f"user_{keys.app_id}_{trial}"
                    sealed = wf.credentials.seal("sk-or-v1-trial", f"{keys.app_id}/{user}")
                    await wf.store.save_connection(
                        NewConnection(keys.app_id, user, "dev", 5_000_000, sealed), int(time.time())
                    )
                    lags.append(await _revoke_during_stream(client, wf, user, worker_a, worker_b))
            for user in (f"user_{keys.app_id}_{trial}" for trial in range(TRIALS)):
                record = await wf.store.get_connection(keys.app_id, user, int(time.time()))
                assert record is not None and record.status is ConnectionState.REVOKED and record.reserved == 0
        assert all(lag < PROMISE_SECONDS for lag in lags), f"cut-off after the revoke's answer, in seconds: {lags}"


async def _revoke_during_stream(
    client: httpx2.AsyncClient, wf: Wattfare, user: str, worker_a: str, worker_b: str
) -> float:
    """Seconds from the revoke's answer (from worker A) to the stream's cut-off event (from worker B)."""
    events: list[tuple[float, str]] = []
    started = asyncio.Event()
    headers = {"authorization": f"Bearer {wf.keys.secret_key}", "x-wattfare-user": user}
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "count"}], "stream": True}

    async def stream() -> None:
        async with client.stream("POST", f"{worker_b}/api/v1/chat/completions", json=body, headers=headers) as reply:
            assert reply.status_code == 200
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    events.append((time.monotonic(), line[6:]))
                    if len(events) == 3:
                        started.set()

    streaming = asyncio.ensure_future(stream())
    await asyncio.wait_for(started.wait(), 30)
    session = await wf.create_session(user)
    revoke = await client.delete(f"{worker_a}/api/v1/connections", headers={"authorization": f"Bearer {session.token}"})
    answered = time.monotonic()
    assert revoke.status_code == 204, revoke.text
    await asyncio.wait_for(streaming, 30)
    cut = [at for at, line in events if "not_connected" in line]
    assert cut, f"no cut-off event; the stream ended with {[line for _at, line in events[-2:]]}"
    assert events[-1][1] == "[DONE]"
    return cut[0] - answered
