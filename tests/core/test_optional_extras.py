"""The core installs without extras: nothing imports asyncpg, openai, FastAPI, Litestar or the
consent domain's libraries until the feature that needs them is used."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
EXTRAS = (
    "asyncpg", "argon2", "itsdangerous", "fastapi", "litestar", "openai", "httpx2", "pydantic_ai",
    "opentelemetry", "prometheus_client",
)

class WithoutExtras:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, WithoutExtras())
import wattfare_embed, wattfare_embed.cli, wattfare_embed.proxy, wattfare_embed.webhooks, wattfare_embed.store.sql
from wattfare_embed import Wattfare, new_key_pair
keys = new_key_pair()
wf = Wattfare(secret_key=keys.secret_key, publishable_key=keys.publishable_key, database_url="sqlite://")
import asyncio
from wattfare_embed.telemetry import NO_TRACE

async def started():
    async with wf:  # no OpenTelemetry, and no log handler at INFO: no request is traced
        assert wf.recorder.begin("chat") is NO_TRACE

asyncio.run(started())
print("ok")
"""


def test_the_core_imports_and_builds_without_any_extra() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
