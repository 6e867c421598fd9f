"""The memory soak (``make soak``; ``SOAK_MINUTES`` sets its length, 60 by default).

One worker process under uvicorn on an SQLite file, the fake upstream in its own process; for the
whole run, clients stream and leave mid-stream, and users revoke mid-stream, a few at a time.
The worker's resident memory is sampled each minute; the run fails if the second half grew more
than ``--allowed-growth-mb`` (a leak of kilobytes per request shows as tens of megabytes an hour).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import httpx2

from tests.faults.processes import Worker, fake_upstream_process, worker_process
from wattfare_embed import Wattfare, new_key_pair
from wattfare_embed.store import NewConnection

CONCURRENCY = 8


def _rss_mb(worker: Worker) -> float:
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _one(client: httpx2.AsyncClient, wf: Wattfare, worker: Worker, n: int) -> None:
    user = f"soak{uuid.uuid4().hex[:10]}"
    sealed = wf.credentials.seal("sk-or-v1-" + uuid.uuid4().hex, f"{wf.keys.app_id}/{user}")
    await wf.store.save_connection(NewConnection(wf.keys.app_id, user, "dev", 1_000_000, sealed), int(time.time()))
    headers = {"authorization": f"Bearer {wf.keys.secret_key}", "x-wattfare-user": user}
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    revoke = n % 3 == 0
    async with client.stream("POST", worker.base + "/api/v1/chat/completions", json=body, headers=headers) as answer:
        events = 0
        async for chunk in answer.aiter_raw():
            events += chunk.count(b"data:")
            if events >= 3:
                if not revoke:
                    return  # the client leaves mid-stream
                await wf.disconnect(user)
                revoke = False


async def soak(minutes: float, allowed_growth_mb: float) -> None:
    keys = new_key_pair()
    with tempfile.TemporaryDirectory() as directory:
        database = f"sqlite+aiosqlite:///{Path(directory) / 'soak.db'}"
        async with fake_upstream_process("--reply-words", "400", "--chunk-delay", "0.02") as upstream:
            wf = Wattfare(secret_key=keys.secret_key, publishable_key=keys.publishable_key, database_url=database)
            async with wf, worker_process(keys, database, upstream) as worker, httpx2.AsyncClient(timeout=30) as client:
                samples: list[float] = []
                ends = time.monotonic() + minutes * 60
                next_sample, count = time.monotonic(), 0
                while time.monotonic() < ends:
                    await asyncio.gather(*(_one(client, wf, worker, count + i) for i in range(CONCURRENCY)))
                    count += CONCURRENCY
                    if time.monotonic() >= next_sample:
                        samples.append(_rss_mb(worker))
                        print(f"{count} requests, worker RSS {samples[-1]:.1f} MB", flush=True)
                        next_sample += 60
    half = samples[len(samples) // 2]
    growth = samples[-1] - half
    print(f"second-half growth: {growth:.1f} MB over {count} requests")
    if growth > allowed_growth_mb:
        raise SystemExit(f"memory grew {growth:.1f} MB in the second half (allowed {allowed_growth_mb} MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--allowed-growth-mb", type=float, default=20)
    args = parser.parse_args()
    asyncio.run(soak(args.minutes, args.allowed_growth_mb))
