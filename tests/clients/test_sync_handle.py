"""``wf.user(id).openai_sync()``: sync code and worker threads of an async app, streaming, deadlines,
and a clear refusal where waiting would deadlock."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI

from wattfare_embed import Wattfare, is_not_connected, new_key_pair
from wattfare_embed.contrib.fastapi import install_wattfare
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve, serve_in_loop

from .conftest import MINI, REPLY, Stack

HELLO = [{"role": "user", "content": "Say hello"}]


def _embed(upstream_url: str, tmp_path: Path) -> Wattfare:
    keys = new_key_pair(app_id="t" + uuid.uuid4().hex[:12])
    return Wattfare(
        secret_key=keys.secret_key,
        publishable_key=keys.publishable_key,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}",
        upstream_url=upstream_url,
    )


@pytest.mark.asyncio(loop_scope="module")
async def test_a_worker_thread_streams_token_by_token_through_the_apps_loop(stack: Stack) -> None:
    ai = await stack.user("1")
    stack.fake.chunk_delay = 0.04

    def in_worker() -> list[tuple[float, str]]:
        client = ai.openai_sync()
        assert isinstance(client, openai.OpenAI)
        sent = time.monotonic()
        arrivals = []
        for chunk in client.chat.completions.create(model=MINI, messages=HELLO, stream=True):  # type: ignore[arg-type]
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((time.monotonic() - sent, chunk.choices[0].delta.content))
        return arrivals

    arrivals = await asyncio.to_thread(in_worker)
    assert "".join(text for _, text in arrivals) == REPLY
    # Spread out as the upstream sent them (twelve pieces 40 ms apart), not one blob at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.25
    await stack.nothing_held(ai)
    assert (await ai.status()).spent > 0


@pytest.mark.asyncio(loop_scope="module")
async def test_on_the_loops_own_thread_the_sync_client_refuses_instead_of_deadlocking(stack: Stack) -> None:
    ai = await stack.user("1")
    client = ai.openai_sync()
    with pytest.raises(RuntimeError, match="event loop's own thread") as raised:
        client.chat.completions.create(model=MINI, messages=HELLO)  # type: ignore[arg-type]
    assert "openai()" in str(raised.value) and "asyncio.to_thread" in str(raised.value)
    # The same client is fine from a worker thread.
    reply = await asyncio.to_thread(client.chat.completions.create, model=MINI, messages=HELLO)
    assert reply.choices[0].message.content == REPLY
    # A copy with other options (the SDK's with_options) is the same kind of client.
    tuned = client.with_options(timeout=30)
    with pytest.raises(RuntimeError, match="event loop's own thread"):
        tuned.chat.completions.create(model=MINI, messages=HELLO)  # type: ignore[arg-type]
    reply = await asyncio.to_thread(tuned.chat.completions.create, model=MINI, messages=HELLO)
    assert reply.choices[0].message.content == REPLY


@pytest.mark.asyncio(loop_scope="module")
async def test_a_sync_call_with_no_answer_ends_at_its_timeout_and_settles(stack: Stack) -> None:
    ai = await stack.user("1")
    # A non-streamed reply of twelve pieces, 0.35 s each: 4.2 s before its first byte.
    stack.fake.inject(slow=0.35)
    client = ai.openai_sync(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await asyncio.to_thread(client.chat.completions.create, model=MINI, messages=HELLO)
    assert time.monotonic() - started < 3  # the deadline, not the answer, ended the wait
    # The upstream still answers (and bills) the call it was sent: the embed settles it when it does.
    await stack.nothing_held(ai)
    assert (await ai.status()).spent > 0


@pytest.mark.asyncio(loop_scope="module")
async def test_a_sync_route_of_an_async_app_runs_the_embed_on_the_apps_loop(stack: Stack, tmp_path: Path) -> None:
    """A FastAPI ``def`` route runs on an anyio worker thread: the embed, not yet started, starts on the app's loop."""
    wf = _embed(stack.wf.settings.upstream_url, tmp_path)
    app = FastAPI()
    install_wattfare(app)

    @app.post("/ask")
    def ask() -> dict[str, Any]:
        reply = wf.user("nobody-connected").openai_sync().chat.completions.create(model=MINI, messages=HELLO)  # type: ignore[arg-type]
        return {"answer": reply.choices[0].message.content}

    try:
        async with serve_in_loop(app) as base_url, httpx2.AsyncClient(base_url=base_url, timeout=30) as http:
            response = await http.post("/ask")
        assert (response.status_code, response.json()["error"]["code"]) == (402, "not_connected")
        assert wf.loop is asyncio.get_running_loop()
    finally:
        await wf.shutdown()


def test_a_program_without_an_event_loop_runs_the_embed_on_a_thread_of_its_own(tmp_path: Path) -> None:
    fake = FakeOpenRouter(reply_text=REPLY)
    with serve(fake, lifespan="off") as fake_url:
        wf = _embed(fake_url + "/api/v1", tmp_path)
        ai = wf.user("script-user")
        with pytest.raises(openai.APIStatusError) as raised:
            ai.openai_sync().chat.completions.create(model=MINI, messages=HELLO)  # type: ignore[arg-type]
        assert is_not_connected(raised.value)
        loop = wf.loop
        assert loop is not None and loop.is_running()
        assert _thread_of(loop).name == "wattfare-embed-loop"

        # Connected on the embed's own loop, where its store lives.
        user = asyncio.run_coroutine_threadsafe(Stack(fake, wf, "").user("1"), loop).result(10)
        stream = user.openai_sync().chat.completions.create(model=MINI, messages=HELLO, stream=True)  # type: ignore[arg-type]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == REPLY
        asyncio.run_coroutine_threadsafe(wf.shutdown(), loop).result(10)


def _thread_of(loop: asyncio.AbstractEventLoop) -> threading.Thread:
    found: list[threading.Thread] = []
    loop.call_soon_threadsafe(lambda: found.append(threading.current_thread()))
    deadline = time.monotonic() + 5
    while not found and time.monotonic() < deadline:
        time.sleep(0.01)
    return found[0]
