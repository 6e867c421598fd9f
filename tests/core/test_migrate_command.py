"""``wattfare migrate --sql | --check`` and ``wattfare consent-domain migrate``: what a release step runs.

The printed SQL is applied as a DBA would apply it, and the app's start-up check must then pass.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import Connection

from tests.core.databases import differences, fresh_database, on, tables_of
from tests.core.test_upgrade_from_0_1_0 import EMBED_ROWS, SCHEMAS
from wattfare_embed import SqlStore
from wattfare_embed.cli import main
from wattfare_embed.consent_domain.revisions import migrations as domain_migrations
from wattfare_embed.consent_domain.storage import DomainStore
from wattfare_embed.store import migrations
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("WATTFARE_", "OPENROUTER_")):
            monkeypatch.delenv(name)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _apply(database_url: str, script: str) -> None:
    """What a DBA does with the printed script: run it as it is."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split(":///", 1)[1]) as db:
            db.executescript(script)
        return
    url = asyncpg_url(database_url)
    assert url is not None
    connection = await asyncpg.connect(**_connect_kwargs(url))
    try:
        await connection.execute(script)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path, "sql") as url:
        yield url


async def test_the_printed_sql_builds_a_fresh_database_that_start_up_accepts(
    capsys: pytest.CaptureFixture[str], fresh_url: str
) -> None:
    dialect_only = "postgresql://" if fresh_url.startswith("postgresql") else "sqlite://"
    code, script, err = await asyncio.to_thread(_run, capsys, "migrate", "--sql", "--database-url", dialect_only)
    assert code == 0, err
    assert "CREATE TABLE wattfare_alembic_version" in script
    assert re.findall(r"(?<!wattfare_)alembic_version", script) == []  # never the app's own table
    assert await on(fresh_url, lambda db: tables_of(migrations, db)) == set()  # printing changed nothing
    await _apply(fresh_url, script)
    store = SqlStore(fresh_url, auto_migrate=False)
    await store.open()
    await store.close()
    assert await on(fresh_url, lambda db: differences(migrations, db)) == []


async def test_the_printed_sql_from_0_1_0_upgrades_its_tables_in_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript((SCHEMAS / "embed.sqlite.sql").read_text() + EMBED_ROWS)
    arguments = ["migrate", "--sql", "--from", "0.1.0", "--database-url", "sqlite://"]
    code, script, err = await asyncio.to_thread(_run, capsys, *arguments)
    assert code == 0, err
    assert "CREATE TABLE wattfare_connections" not in script  # the tables are there: stamped, not rebuilt
    url = f"sqlite+aiosqlite:///{path}"
    await _apply(url, script)
    store = SqlStore(url, auto_migrate=False)
    await store.open()
    try:
        assert len(await store.ledger("app1", limit=10)) == 3
    finally:
        await store.close()


def test_the_printed_sql_can_start_at_a_revision(capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _ = _run(capsys, "migrate", "--sql", "--from", "wattfare_0001", "--database-url", "postgresql://")
    assert code == 0
    # The first revision's tables are there already (later revisions may still add their own).
    assert "CREATE TABLE wattfare_connections" not in script and f"SET version_num='{migrations.head}'" in script
    assert "pg_advisory_xact_lock" in script  # a DBA's run and an app's start-up never interleave
    code, _, err = _run(capsys, "migrate", "--sql", "--from", "wattfare_0999", "--database-url", "sqlite://")
    assert code == 2 and "'wattfare_0999' is not a wattfare revision" in err
    code, _, err = _run(capsys, "migrate", "--from", "wattfare_0001", "--database-url", "sqlite://")
    assert code == 2 and "--from goes with --sql" in err


def test_check_exits_1_until_the_tables_are_migrated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'release.db'}"
    code, out, _ = _run(capsys, "migrate", "--check", "--database-url", url)
    assert code == 1 and "no wattfare tables" in out and "run `wattfare migrate`" in out
    with sqlite3.connect(tmp_path / "release.db") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone() == (0,)
    assert _run(capsys, "migrate", "--database-url", url)[0] == 0
    code, out, _ = _run(capsys, "migrate", "--check", "--database-url", url)
    assert code == 0 and f"up to date in {url} (revision {migrations.head})" in out


def test_a_0_1_0_database_is_reported_as_adopted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript((SCHEMAS / "embed.sqlite.sql").read_text() + EMBED_ROWS)
    code, out, _ = _run(capsys, "migrate", "--database-url", f"sqlite+aiosqlite:///{path}")
    assert code == 0 and out.startswith(f"wattfare tables upgraded from 0.1.0 to {migrations.head} in ")


async def test_the_consent_domain_migrates_with_its_own_command(
    capsys: pytest.CaptureFixture[str], fresh_url: str
) -> None:
    arguments = ["consent-domain", "migrate", "--database-url", fresh_url]
    code, out, err = await asyncio.to_thread(_run, capsys, *arguments, "--check")
    assert code == 1 and "`wattfare consent-domain migrate`" in out, err
    code, out, err = await asyncio.to_thread(_run, capsys, *arguments)
    assert code == 0 and out.startswith("consent domain tables created in "), err

    def state(db: Connection) -> tuple[object, ...]:
        return domain_migrations.current(db), tables_of(migrations, db), differences(domain_migrations, db)

    assert await on(fresh_url, state) == (domain_migrations.head, set(), [])
    store = DomainStore(fresh_url, auto_migrate=False)
    await store.open()
    await store.close()
    code, script, _ = await asyncio.to_thread(
        _run, capsys, "consent-domain", "migrate", "--sql", "--database-url", "sqlite://"
    )
    assert code == 0 and "CREATE TABLE wcd_alembic_version" in script and "wattfare_" not in script
