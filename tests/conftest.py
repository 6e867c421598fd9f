"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable), keys, live servers."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.log_guard import SecretsInLogs
from wattfare_embed import AppKeys, SqlStore, new_key_pair

BASE_POSTGRES_URL = os.environ.get("WATTFARE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
# One database per run, made from the base one at the start and dropped at the end: a run never
# meets rows of another run, nor tables another code version (another branch, an older release)
# migrated. Child processes inherit the name, so servers a test starts share the run's database.
_RUN_DATABASE = os.environ.setdefault(
    "WATTFARE_TEST_RUN_DATABASE", f"{make_url(BASE_POSTGRES_URL).database}_run{os.getpid()}"
)
POSTGRES_URL = make_url(BASE_POSTGRES_URL).set(database=_RUN_DATABASE).render_as_string(hide_password=False)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if postgres_reachable():
        return
    if IN_CI:
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432, and CI must run the PostgreSQL tests")
    pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432: skipping the PostgreSQL variant")


async def _admin(statement: str) -> None:
    """Run one statement on the base test database (where databases are made and dropped)."""
    import asyncpg

    from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url

    url = asyncpg_url(BASE_POSTGRES_URL)
    assert url is not None
    connection = await asyncpg.connect(**_connect_kwargs(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session", autouse=True)
def _postgres_run_database() -> Iterator[None]:
    if not postgres_reachable() or os.getpid() != int(_RUN_DATABASE.rsplit("_run", 1)[1]):
        yield  # no server, or a child process of the run that made the database
        return
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{_RUN_DATABASE}" WITH (FORCE)'))
    asyncio.run(_admin(f'CREATE DATABASE "{_RUN_DATABASE}"'))
    try:
        yield
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{_RUN_DATABASE}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs on a fresh SQLite file and on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'wattfare.db'}"
    require_postgres()
    return POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'wattfare.db'}"


def pytest_configure(config: pytest.Config) -> None:
    # Every record is made, so the key guard sees debug records too (a host may enable them);
    # pytest's reports keep only warnings and up (`log_level` in pyproject.toml).
    logging.getLogger().setLevel(logging.DEBUG)


@pytest.fixture(autouse=True)
def no_key_in_any_log_record() -> Iterator[SecretsInLogs]:
    """Every test fails if any record, of any logger at any level, carries a key (``log_guard``)."""
    guard = SecretsInLogs()
    root = logging.getLogger()
    # As pytest does: loggers that do not propagate (uvicorn's) get the handler themselves.
    loggers = [root] + [
        logger
        for logger in root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in loggers:
        logger.addHandler(guard)
    try:
        yield guard
    finally:
        for logger in loggers:
            logger.removeHandler(guard)
    if guard.leaks:
        pytest.fail("a log record carried a key:\n" + "\n".join(guard.leaks), pytrace=False)


@pytest.fixture
def keys(no_key_in_any_log_record: SecretsInLogs) -> AppKeys:
    """A fresh test key pair: a new app id per test keeps PostgreSQL rows of tests apart."""
    pair = new_key_pair(app_id="t" + uuid.uuid4().hex[:12])
    no_key_in_any_log_record.remember(pair.secret_key)
    return pair


@pytest.fixture
def user_id() -> str:
    return "user_" + uuid.uuid4().hex[:8]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def artifacts_dir() -> Iterator[Path]:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    yield path


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """An opened ``SqlStore`` on each database, with no embed around it."""
    opened = SqlStore(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
