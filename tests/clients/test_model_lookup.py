"""What OpenAI clients call on start-up: ``client.models.retrieve(id)`` and ``client.models.list()``, over
HTTP and in process, async and sync; an unknown model is the SDK's own ``NotFoundError``."""

from __future__ import annotations

import asyncio

import pytest

from wattfare_embed import to_wattfare_error

from .calls import Conn
from .conftest import MINI, Stack, require_client

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("mode", ["http", "inprocess"])
async def test_models_are_retrieved_by_id_and_listed(stack: Stack, mode: str) -> None:
    require_client("openai", "openai", "models")
    import openai

    conn = Conn(mode, await stack.user(), stack.api_url, stack.secret_key, MINI)
    client = conn.async_openai()

    model = await client.models.retrieve(MINI)
    assert (model.id, model.object, model.owned_by) == (MINI, "model", "openai")
    listed = [entry.id async for entry in client.models.list()]
    assert MINI in listed and len(listed) > 3
    synced = await asyncio.to_thread(lambda: conn.sync_openai().models.retrieve(MINI))
    assert synced.id == MINI

    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("openai/no-such-model")
    error = to_wattfare_error(missing.value)
    assert error is not None and error.code == "invalid_request"
