"""One stack for every client row: the fake OpenRouter and a host app with the embed, both under uvicorn.

The stack lives for the whole module (starting servers per row would cost more than the rows);
every row gets users of its own, so rows never share money. Faults and reply texts a row sets
are put back when it ends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.routing import Mount

from wattfare_embed import Wattfare, WattfareUser, new_key_pair
from wattfare_embed.money import micros_from_usd
from wattfare_embed.store import NewConnection
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import serve_in_loop

# LiteLLM fetches its price map from the network at import unless told to use the copy it ships.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
MOUNT = "/wattfare"
MINI = "openai/gpt-4o-mini"
SONNET = "anthropic/claude-sonnet-4"  # 3 µ$ a prompt token, 15 µ$ a completion token
REPLY = "Hello there from the simulated upstream, one word at a time"
# 150 one-token pieces: far past what a $0.001 cap holds on Sonnet (at most 66 completion tokens).
OVERRUN_REPLY = " ".join(f"w{i}" for i in range(150))
CUT_OFF_CAP_USD = "0.001"
REFUSED_CAP_USD = "0.0001"  # below a prompt plus 16 completion tokens of Sonnet: refused at admission


NODE_DIR = Path(__file__).parent / "node"
INSTALLED_LOCK = NODE_DIR / "node_modules" / ".wattfare-installed-lock.json"
NODE_DEADLINE_SECONDS = 60


def require_client(package: str, module: str, row: str) -> None:
    """Skip (fail in CI) when a client package is missing, saying how to install it."""
    try:
        __import__(module)
    except ImportError:
        message = f"{package} is not installed, so the {row} rows cannot run: pip install -e '.[clients]'"
        if IN_CI:
            pytest.fail(message + " (CI must run every client row)")
        pytest.skip(message)


@dataclass
class Stack:
    fake: FakeOpenRouter
    wf: Wattfare
    base_url: str  # the host app

    @property
    def api_url(self) -> str:
        """What an HTTP client's base_url is set to."""
        return self.base_url + MOUNT + "/api/v1"

    @property
    def secret_key(self) -> str:
        return self.wf.keys.secret_key

    async def user(self, monthly_usd: str | None = "1") -> WattfareUser:
        """A fresh user, connected with that cap (``None``: never connected)."""
        user = "user_" + uuid.uuid4().hex[:10]
        if monthly_usd is not None:
            key = self.fake.keys.create(name=f"funding for {user}")
            sealed = self.wf.credentials.seal(key.secret, f"{self.wf.keys.app_id}/{user}")
            await self.wf.store.save_connection(
                NewConnection(
                    app_id=self.wf.keys.app_id,
                    app_user_id=user,
                    authority="dev",
                    monthly_cap=micros_from_usd(monthly_usd),
                    sealed_credential=sealed,
                ),
                int(time.time()),
            )
        return self.wf.user(user)

    async def nothing_held(self, user: WattfareUser) -> None:
        """Every request of ``user`` ended with a final ledger row (a cut stream settles just after)."""
        deadline = time.monotonic() + 10
        while True:
            record = await self.wf.store.get_connection(self.wf.keys.app_id, user.app_user_id, int(time.time()))
            if record is None or record.reserved == 0:
                return
            assert time.monotonic() < deadline, f"{user.app_user_id} still has {record.reserved} µ$ held"
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("clients")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(stack_dir: Path) -> AsyncIterator[Stack]:
    keys = new_key_pair(app_id="t" + uuid.uuid4().hex[:12])
    fake = FakeOpenRouter(reply_text=REPLY)
    async with serve_in_loop(fake, lifespan="off") as fake_url:
        wf = Wattfare(
            secret_key=keys.secret_key,
            publishable_key=keys.publishable_key,
            database_url=f"sqlite+aiosqlite:///{stack_dir / 'wattfare.db'}",
            upstream_url=fake_url + "/api/v1",
            app_name="Client Matrix",
        )
        await wf.startup()
        try:
            async with serve_in_loop(Starlette(routes=[Mount(MOUNT, app=wf)])) as base_url:
                yield Stack(fake, wf, base_url)
        finally:
            await wf.shutdown()


@pytest.fixture(autouse=True)
def fresh_fake(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a row changes on the shared fake is put back for the next one."""
    if "stack" not in request.fixturenames:
        yield
        return
    stack: Stack = request.getfixturevalue("stack")
    yield
    stack.fake.faults.clear()
    stack.fake.reply_text = REPLY
    stack.fake.chunk_delay = 0.0


def _node_missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI must run the Node clients: .ci/run installs nodejs and npm)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def node_clients() -> str:
    """The node binary, with the AI SDK installed from the lockfile (``npm ci`` only when it changed)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _node_missing("Node.js and npm are not installed, so the AI SDK rows cannot run: apt-get install nodejs npm")
    assert node is not None and npm is not None
    lock = (NODE_DIR / "package-lock.json").read_text()
    if not INSTALLED_LOCK.exists() or INSTALLED_LOCK.read_text() != lock:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        INSTALLED_LOCK.write_text(lock)
    return node
