"""A revoke handled by one app process stops a stream served by another."""

from __future__ import annotations

import json
import time

import httpx2
from starlette.applications import Starlette
from starlette.routing import Mount

from wattfare_embed import AppKeys, Wattfare
from wattfare_embed.store import NewConnection
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve_in_loop


def _embed(keys: AppKeys, database_url: str, upstream: str) -> Wattfare:
    return Wattfare(
        secret_key=keys.secret_key,
        publishable_key=keys.publishable_key,
        database_url=database_url,
        upstream_url=upstream,
    )


async def test_a_revoke_in_another_process_stops_an_open_stream_within_seconds(
    keys: AppKeys, database_url: str, user_id: str
) -> None:
    fake = FakeOpenRouter(reply_text=" ".join(["tick"] * 200), chunk_delay=0.05)  # a ten-second stream
    async with serve_in_loop(fake) as fake_url:
        streaming = _embed(keys, database_url, f"{fake_url}/api/v1")  # the process serving the stream
        other = _embed(keys, database_url, f"{fake_url}/api/v1")  # another process, same database
        async with streaming, other:
            sealed = streaming.credentials.seal("sk-or-v1-user", f"{keys.app_id}/{user_id}")
            await other.store.save_connection(
                NewConnection(keys.app_id, user_id, "dev", 5_000_000, sealed), int(time.time())
            )
            async with serve_in_loop(Starlette(routes=[Mount("/wattfare", app=streaming)])) as base:
                headers = {"authorization": f"Bearer {keys.secret_key}", "x-wattfare-user": user_id}
                body = {
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "user", "content": "count"}],
                    "stream": True,
                }
                events: list[str] = []
                revoked_at = None
                async with (
                    httpx2.AsyncClient(timeout=30) as client,
                    client.stream(
                        "POST", f"{base}/wattfare/api/v1/chat/completions", json=body, headers=headers
                    ) as reply,
                ):
                    async for line in reply.aiter_lines():
                        if line.startswith("data: "):
                            events.append(line[6:])
                        if len(events) == 5 and revoked_at is None:
                            await other.disconnect(user_id)  # not the process holding the stream
                            revoked_at = time.monotonic()
                ended_at = time.monotonic()
            assert revoked_at is not None
            assert ended_at - revoked_at < 4, "the stream kept running after the revoke"
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["error"]["code"] == "not_connected"
            assert sum(1 for event in events if "tick" in event) < 150
            record = await other.store.get_connection(keys.app_id, user_id, int(time.time()))
            assert record is not None and record.reserved == 0
