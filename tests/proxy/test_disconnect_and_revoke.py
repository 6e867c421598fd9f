"""Clients that leave, users who revoke, processes that die: the ledger still ends settled, nothing held."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import Reservation, ReservationRequest
from wattfare_embed.testing.fake_openrouter import Generation
from wattfare_embed.testing.waiting import poll

from .conftest import MINI, Proxied, error_of, sse_data, sse_events

SLOW_REPLY = " ".join(f"word{i}" for i in range(30))


def _generation(proxy: Proxied, generation_id: str) -> Generation | None:
    found = [record for record in proxy.fake.ledger.records if record.id == generation_id]
    return found[0] if found else None


async def _cancelled(proxy: Proxied, generation_id: str) -> Generation | None:
    generation = _generation(proxy, generation_id)
    return generation if generation is not None and generation.cancelled else None


async def test_client_disconnect_closes_the_upstream_and_still_settles_the_ledger(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.fake.reply_text = SLOW_REPLY
    proxy.fake.chunk_delay = 0.2
    started = time.monotonic()

    async with proxy.stream(user_id, max_tokens=100) as response:
        received = b""
        async for chunk in response.aiter_raw():
            received += chunk
            if len(sse_events(received)) >= 3:
                break  # leaving the block closes the connection mid-stream
    generation_id = sse_events(received)[0]["id"]

    generation = await poll(lambda: _cancelled(proxy, generation_id), what="the fake to see its stream cancelled")
    # Closed at once: long before the 30 words (6 s at this pace) would have been sent.
    assert time.monotonic() - started < 3
    assert generation.completion_tokens < 10
    [row] = await proxy.settled(user_id, 1)
    assert (row.state, row.cost_source) == ("settled", "estimated")
    [row] = await proxy.settled(user_id, 1, reconciled=True)
    assert (row.cost_source, row.cost) == ("reported", micros_from_usd(generation.total_cost))
    record = await proxy.connection(user_id)
    assert (record.spent, record.reserved) == (row.cost, 0)


async def test_revoking_from_the_browser_stops_an_open_stream_at_its_next_chunk(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    lite.fake.reply_text = SLOW_REPLY
    lite.fake.chunk_delay = 0.2
    session = await lite.wf.create_session(user_id)

    async with lite.stream(user_id, max_tokens=100) as response:
        received = b""
        revoked_at = None
        async for chunk in response.aiter_raw():
            received += chunk
            if revoked_at is None and len(sse_events(received)) >= 2:
                revoke = await lite.http.delete(
                    "/api/v1/connections", headers={"authorization": f"Bearer {session.token}"}
                )
                assert revoke.status_code == 204
                revoked_at = len(sse_events(received))
    events = sse_events(received)

    assert sse_data(received)[-1] == "[DONE]"
    assert events[-1]["error"]["code"] == "not_connected"
    assert set(events[-1]) == {"error"}
    assert revoked_at is not None and len(events) <= revoked_at + 2  # at most the chunk in flight, then the stop
    await lite.settled(user_id, 1)

    refused = await lite.chat(user_id)

    assert error_of(refused) == (402, "not_connected")
    assert len(lite.upstream_calls()) == 1


async def test_disconnect_from_the_server_stops_an_open_stream(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.fake.reply_text = SLOW_REPLY
    proxy.fake.chunk_delay = 0.5  # revoked while the proxy waits for the next chunk

    async with proxy.stream(user_id, max_tokens=100) as response:
        received = b""
        revoked = False
        async for chunk in response.aiter_raw():
            received += chunk
            if not revoked and len(sse_events(received)) >= 2:
                await proxy.wf.disconnect(user_id)
                revoked = True
    events = sse_events(received)

    assert sse_data(received)[-1] == "[DONE]"
    assert events[-1]["error"]["code"] == "not_connected"
    assert len(events) == 3  # role chunk, first word, then the stop: nothing after the revoke
    generation = await poll(lambda: _cancelled(proxy, events[0]["id"]), what="the upstream stream to be closed")
    assert generation.completion_tokens <= 2
    [row] = await proxy.settled(user_id, 1)
    assert row.state == "settled"
    assert (await proxy.wf.status(user_id)).status == "revoked"


async def test_revoking_before_the_first_byte_stops_the_stream_before_it_starts(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    proxy.recorder.first_byte_gate = gate = asyncio.Event()
    call = asyncio.ensure_future(proxy.stream_bytes(user_id, max_tokens=100))
    await poll(lambda: _sent_upstream(proxy), what="the request to reach the upstream")

    await proxy.wf.disconnect(user_id)
    gate.set()
    response, raw = await call

    assert response.status_code == 402
    assert json.loads(raw)["error"]["code"] == "not_connected"
    [row] = await proxy.settled(user_id, 1)
    # The upstream was asked, so it may bill the prompt: charged as estimated, reconciled when it can be.
    assert row.state == "settled"


async def _sent_upstream(proxy: Proxied) -> bool | None:
    return True if proxy.upstream_calls() else None


async def test_a_revoked_connection_is_refused_before_any_upstream_call(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    await lite.wf.disconnect(user_id)

    streamed, _ = await lite.stream_bytes(user_id)
    whole = await lite.chat(user_id)

    assert streamed.status_code == 402
    assert error_of(whole) == (402, "not_connected")
    assert lite.upstream_calls() == []
    assert await lite.ledger(user_id) == []


async def test_an_unknown_user_is_not_connected(lite: Proxied, user_id: str) -> None:
    response = await lite.chat("nobody-" + user_id)

    assert error_of(response) == (402, "not_connected")
    assert lite.upstream_calls() == []


async def test_a_reservation_orphaned_by_a_dead_process_is_swept(proxy: Proxied, user_id: str) -> None:
    await proxy.connect(user_id)
    died_at = int(time.time()) - 10
    orphan = await proxy.wf.store.reserve(
        ReservationRequest(
            app_id=proxy.keys.app_id,
            app_user_id=user_id,
            wanted=700,
            minimum=1,
            kind="chat",
            model=MINI,
            ttl_seconds=0,
        ),
        died_at,
    )
    assert isinstance(orphan, Reservation)
    assert (await proxy.connection(user_id)).reserved == 700

    await proxy.wf.proxy.sweep()

    [row] = await proxy.ledger(user_id)
    assert (row.id, row.state, row.cost) == (orphan.ledger_id, "expired", 700)
    record = await proxy.connection(user_id)
    assert (record.reserved, record.spent) == (0, 700)  # the whole hold is charged: it may have been spent
    await proxy.wf.proxy.sweep()  # a second sweep changes nothing
    assert (await proxy.connection(user_id)).spent == 700


async def test_a_request_cancelled_mid_stream_still_settles(lite: Proxied, user_id: str) -> None:
    # A server stopping cancels its request tasks: driven at the ASGI level, as uvicorn would.
    await lite.connect(user_id)
    lite.fake.reply_text = SLOW_REPLY
    lite.fake.chunk_delay = 0.2
    body = json.dumps({"model": MINI, "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    requested = False
    first_chunk = asyncio.Event()

    async def receive() -> dict[str, object]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/chat/completions",
        "raw_path": b"/api/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [
            *((name.encode(), value.encode()) for name, value in lite.headers(user_id).items()),
            (b"content-type", b"application/json"),
        ],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
    }
    task = asyncio.ensure_future(lite.wf(scope, receive, send))
    await asyncio.wait_for(first_chunk.wait(), 10)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [row] = await lite.settled(user_id, 1)
    assert (row.state, row.cost_source) == ("settled", "estimated")
    assert (await lite.connection(user_id)).reserved == 0


async def test_a_disconnect_forgets_the_credential_its_calls_opened(lite: Proxied, user_id: str) -> None:
    await lite.connect(user_id)
    await lite.chat(user_id)
    # The opened credential lives only in the proxy's memory: nothing else could show it is gone.
    identities = lite.wf.proxy._identities
    assert len(identities) == 1

    await lite.wf.disconnect(user_id)

    assert len(identities) == 0
