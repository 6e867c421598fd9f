"""Several workers, one scrape: with ``PROMETHEUS_MULTIPROC_DIR`` any worker answers for all."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from tests.concurrency.workers import running_worker
from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.store import NewConnection
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve_in_loop


def _requests_total(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "wattfare_requests_total"
    )


async def test_one_scrape_counts_the_requests_of_every_worker(
    keys: AppKeys, sqlite_url: str, user_id: str, tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    wf = Wattfare(secret_key=keys.secret_key, publishable_key=keys.publishable_key, database_url=sqlite_url)
    async with wf:
        sealed = wf.credentials.seal("sk-or-v1-workers", f"{keys.app_id}/{user_id}")
        await wf.store.save_connection(NewConnection(keys.app_id, user_id, "dev", 5_000_000, sealed), int(time.time()))
    environment = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    async with serve_in_loop(FakeOpenRouter()) as fake:
        upstream = fake + "/api/v1"
        async with (
            running_worker(keys, sqlite_url, upstream, "--prometheus", environment=environment) as first,
            running_worker(keys, sqlite_url, upstream, "--prometheus", environment=environment) as second,
            httpx2.AsyncClient(timeout=30) as client,
        ):
            headers = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user_id}
            body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            for worker, count in ((first, 3), (second, 2)):
                for _ in range(count):
                    reply = await client.post(f"{worker}/api/v1/chat/completions", json=body, headers=headers)
                    assert reply.status_code == 200
            scrape = {"authorization": f"Bearer {keys.secret_key}"}
            from_first = await client.get(f"{first}/metrics", headers=scrape)
            from_second = await client.get(f"{second}/metrics", headers=scrape)
    assert from_first.status_code == from_second.status_code == 200
    assert _requests_total(from_first.text) == _requests_total(from_second.text) == 5
