"""Two app processes sharing one PostgreSQL database never jointly pass a user's cap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest

from tests.conftest import POSTGRES_URL, require_postgres
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import NewConnection
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import free_port, serve_in_loop

REPO = Path(__file__).resolve().parents[2]
CAP = 20_000  # $0.02: about twenty reservations of this request at once
LONG_REPLY = " ".join(f"word{i}" for i in range(400))  # longer than any clamped max_tokens


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with httpx2.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"the app process exited: {output}")
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx2.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _app_process(port: int, keys: AppKeys, upstream: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "bench.serve_proxy", "--port", str(port), "--database-url", POSTGRES_URL,
            "--upstream-url", upstream, "--secret-key", keys.secret_key, "--publishable-key", keys.publishable_key,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.postgres
async def test_two_app_processes_sharing_postgres_never_jointly_pass_the_cap(keys: AppKeys, user_id: str) -> None:
    require_postgres()
    fake = FakeOpenRouter(reply_text=LONG_REPLY, chunk_delay=0.002)
    async with serve_in_loop(fake) as fake_url:
        upstream = f"{fake_url}/api/v1"
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=POSTGRES_URL,
            upstream_url=upstream,
        )
        async with wf:
            sealed = wf.credentials.seal("sk-or-v1-shared", f"{keys.app_id}/{user_id}")
            await wf.store.save_connection(NewConnection(keys.app_id, user_id, "dev", CAP, sealed), int(time.time()))
            ports = [free_port(), free_port()]
            processes = [_app_process(port, keys, upstream) for port in ports]
            try:
                for port, process in zip(ports, processes, strict=True):
                    await _wait_ready(f"http://127.0.0.1:{port}/wattfare/api/v1/models", process)
                headers = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user_id}
                body = {
                    "model": "anthropic/claude-sonnet-4",
                    "messages": [{"role": "user", "content": "Tell me a long story"}],
                    "max_tokens": 60,
                    "stream": True,
                }

                async def call(client: httpx2.AsyncClient, port: int) -> int:
                    url = f"http://127.0.0.1:{port}/wattfare/api/v1/chat/completions"
                    async with client.stream("POST", url, json=body, headers=headers) as response:
                        await response.aread()
                        return response.status_code

                async with httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=200)) as client:
                    statuses = await asyncio.gather(*(call(client, ports[i % 2]) for i in range(100)))
            finally:
                for process in processes:
                    process.terminate()
                    process.wait(10)

            status = await wf.status(user_id)
            rows = await wf.store.ledger(keys.app_id, user_id, limit=500)
            admitted = statuses.count(200)
            assert set(statuses) <= {200, 402}
            assert 0 < admitted < 100, "the cap must admit some requests and refuse others"
            assert status.spent <= CAP, f"spent {status.spent} µ$ passed the cap of {CAP} µ$"
            assert len(rows) == admitted and all(row.state == "settled" for row in rows)
            record = await wf.store.get_connection(keys.app_id, user_id, int(time.time()))
            assert record is not None and record.reserved == 0
            charged = micros_from_usd(fake.spend_by_key().get("sk-or-v1-shared", Decimal(0)))
            assert abs(sum(row.cost or 0 for row in rows) - charged) <= admitted  # rounding up, at most 1 µ$ a request
