"""The schema is built and changed only by the revisions shipped in the package, on both databases.

Both sets of tables are covered: the embed's ``wattfare_`` tables and the consent domain's ``wcd_``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import BigInteger, Column, Connection, MetaData, text

import wattfare_embed
import wattfare_embed.consent_domain
from tests.core.conftest import make_embed
from tests.core.databases import differences, fresh_database, on, tables_of
from wattfare_embed import AppKeys, ConfigurationError, SqlStore
from wattfare_embed.consent_domain.revisions import migrations as domain_migrations
from wattfare_embed.consent_domain.storage import DomainStore
from wattfare_embed.store import migrations as embed_migrations
from wattfare_embed.store._migrations import Migrations, new_revision
from wattfare_embed.store._new_revision import main as new_revision_command

REPO = Path(__file__).resolve().parents[2]
SETS = {"embed": embed_migrations, "consent_domain": domain_migrations}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path, "migrations") as url:
        yield url


async def _open_both(url: str) -> None:
    store, domain = SqlStore(url), DomainStore(url)
    await store.open()
    await domain.open()
    await store.close()
    await domain.close()


@pytest.mark.parametrize("name", SETS)
async def test_a_fresh_database_is_built_by_the_revisions_and_matches_the_models(fresh_url: str, name: str) -> None:
    await _open_both(fresh_url)
    migrations = SETS[name]

    def inspect_it(db: Connection) -> tuple[str | None, list[object], set[str], int]:
        rows = db.execute(text(f"SELECT count(*) FROM {migrations.version_table}")).scalar_one()
        return migrations.current(db), differences(migrations, db), tables_of(migrations, db), rows

    current, found, tables, version_rows = await on(fresh_url, inspect_it)
    assert current == migrations.head and version_rows == 1
    assert found == [], f"schema.py and the revisions disagree; add a revision: {found}"
    assert tables == set(migrations.metadata.tables) | {migrations.version_table}


async def test_a_forgotten_revision_is_caught_by_the_comparison(sqlite_url: str) -> None:
    await _open_both(sqlite_url)
    changed = MetaData()
    for table in embed_migrations.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["wattfare_connections"].append_column(Column("held", BigInteger, nullable=False))
    pretend = Migrations(
        label="wattfare",
        script_location=embed_migrations.script_location,
        version_table=embed_migrations.version_table,
        metadata=changed,
        table_prefix="wattfare_",
        legacy_marker=embed_migrations.legacy_marker,
        first_revision=embed_migrations.first_revision,
        command="wattfare migrate",
    )
    found = await on(sqlite_url, lambda db: differences(pretend, db))
    assert [(op[0], op[2], op[3].name) for op in found] == [("add_column", "wattfare_connections", "held")]


@pytest.mark.parametrize("name", SETS)
def test_each_set_has_one_head_and_revisions_numbered_in_order(name: str) -> None:
    migrations = SETS[name]
    script = migrations.script
    assert len(script.get_heads()) == 1, "two revisions share a parent: renumber yours onto the current head"
    revisions = list(reversed(list(script.walk_revisions())))
    prefix = migrations.table_prefix
    assert [r.revision for r in revisions] == [f"{prefix}{n:04d}" for n in range(1, len(revisions) + 1)]
    assert revisions[0].revision == migrations.first_revision and revisions[0].down_revision is None
    for earlier, later in itertools.pairwise(revisions):
        assert later.down_revision == earlier.revision
    for revision in revisions:
        assert Path(revision.path).name.startswith(revision.revision + "_")


@pytest.mark.parametrize("name", SETS)
async def test_every_revision_downgrades_and_upgrades_again(fresh_url: str, name: str) -> None:
    migrations = SETS[name]
    steps = [r.revision for r in reversed(list(migrations.script.walk_revisions()))]

    def stairway(db: Connection) -> list[object]:  # one transaction: `_upgrade` leaves the commit to it
        for revision in steps:
            migrations._upgrade(db, revision)
            command.downgrade(migrations.config(connection=db), "-1")
            migrations._upgrade(db, revision)
        command.downgrade(migrations.config(connection=db), "base")
        assert tables_of(migrations, db) == {migrations.version_table}
        migrations._upgrade(db)
        return differences(migrations, db)

    assert await on(fresh_url, stairway) == []


async def test_start_up_without_auto_migrate_checks_and_creates_nothing(
    keys: AppKeys, sqlite_url: str, tmp_path: Path
) -> None:
    embed = make_embed(keys, sqlite_url, auto_migrate=False)
    with pytest.raises(ConfigurationError, match=r"no wattfare tables .*run `wattfare migrate`"):
        await embed.startup()
    assert await on(sqlite_url, lambda db: tables_of(embed_migrations, db)) == set()
    await on(sqlite_url, embed_migrations.upgrade)  # the release step
    async with make_embed(keys, sqlite_url, auto_migrate=False) as started:
        assert (await started.status("someone")).connected is False


async def test_the_environment_turns_automatic_migration_off(
    keys: AppKeys, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATTFARE_AUTO_MIGRATE", "false")
    with pytest.raises(ConfigurationError, match="no wattfare tables"):
        await make_embed(keys, sqlite_url).startup()
    monkeypatch.setenv("WATTFARE_AUTO_MIGRATE", "maybe")
    with pytest.raises(ConfigurationError, match="WATTFARE_AUTO_MIGRATE must be true or false"):
        make_embed(keys, sqlite_url)


async def test_a_database_behind_this_release_is_refused_when_automatic_migration_is_off(sqlite_url: str) -> None:
    await on(sqlite_url, lambda db: embed_migrations.upgrade(db, embed_migrations.first_revision))
    store = SqlStore(sqlite_url, auto_migrate=False)
    with pytest.raises(
        ConfigurationError, match=f"at revision wattfare_0001 and this release needs {embed_migrations.head}"
    ):
        await store.open()
    await SqlStore(sqlite_url).open()  # automatic migration takes it the rest of the way
    store = SqlStore(sqlite_url, auto_migrate=False)
    await store.open()
    await store.close()


@pytest.mark.parametrize("auto_migrate", [True, False])
async def test_a_database_a_newer_release_migrated_is_refused_at_every_start_up(
    tmp_path: Path, auto_migrate: bool
) -> None:
    path = tmp_path / "newer.db"
    await _open_both(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE wattfare_alembic_version SET version_num = 'wattfare_9999'")
    store = SqlStore(f"sqlite+aiosqlite:///{path}", auto_migrate=auto_migrate)
    for _attempt in range(2):  # a mounted app retries start-up on every request
        with pytest.raises(ConfigurationError, match=r"wattfare_9999, which this release .* does not know"):
            await store.open()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM wattfare_alembic_version").fetchall() == [("wattfare_9999",)]


async def test_tables_of_no_known_revision_are_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "partial.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE wattfare_ledger (id VARCHAR(40) PRIMARY KEY)")
    with pytest.raises(ConfigurationError, match=r"wattfare tables \(wattfare_ledger\) but neither"):
        await SqlStore(f"sqlite+aiosqlite:///{path}").open()


async def test_the_consent_domain_without_auto_migrate_checks_its_tables(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"no consent domain tables .*`wattfare consent-domain migrate`"):
        await DomainStore(sqlite_url, auto_migrate=False).open()
    await on(sqlite_url, domain_migrations.upgrade)
    store = DomainStore(sqlite_url, auto_migrate=False)
    await store.open()
    assert await store.setting("probe", "made") == "made"
    await store.close()


def test_the_host_filters_leave_out_only_our_tables() -> None:
    assert wattfare_embed.migrations is embed_migrations
    assert wattfare_embed.consent_domain.migrations is domain_migrations
    for migrations, ours in ((embed_migrations, "wattfare_ledger"), (domain_migrations, "wcd_grants")):
        assert migrations.include_name(ours, "table", {}) is False
        assert migrations.include_name(migrations.version_table, "table", {}) is False
        assert migrations.include_name("alembic_version", "table", {}) is True
        assert migrations.include_name("notes", "table", {}) is True
        assert migrations.include_name("ix", "index", {"table_name": ours}) is False
        table = migrations.metadata.tables[ours]
        assert migrations.include_object(table, ours, "table", False, None) is False
        column = next(iter(table.c))
        assert migrations.include_object(column, column.name, "column", False, None) is False


def test_the_wheel_ships_the_revisions(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a clean copy: an old build/ in the checkout must not count
    shutil.copytree(REPO / "wattfare_embed", source / "wattfare_embed", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("wattfare_embed-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for migrations in SETS.values():
        package = migrations.script_location.replace(".", "/").replace(":", "/")
        assert {f"{package}/env.py", f"{package}/script.py.mako", f"{package}/versions/__init__.py"} <= names
        for revision in migrations.script.walk_revisions():
            assert f"{package}/versions/{Path(revision.path).name}" in names
    assert not any(re.search(r"__pycache__|\.pyc$", name) for name in names)


def _pretend_changed(tmp_path: Path) -> Migrations:
    """The embed's revisions copied aside, and models with one column more than the newest revision."""
    copy = tmp_path / "revisions"
    source = Path(embed_migrations.script.dir)
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    changed = MetaData()
    for table in embed_migrations.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["wattfare_connections"].append_column(Column("held", BigInteger, nullable=False, server_default="0"))
    return Migrations(
        label="wattfare",
        script_location=str(copy),
        version_table=embed_migrations.version_table,
        metadata=changed,
        table_prefix="wattfare_",
        legacy_marker=embed_migrations.legacy_marker,
        first_revision=embed_migrations.first_revision,
        command="wattfare migrate",
    )


def test_the_revision_command_writes_the_next_revision_that_makes_models_and_database_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pretend = _pretend_changed(tmp_path)
    head = embed_migrations.head
    following = f"wattfare_{int(head.rsplit('_', 1)[1]) + 1:04d}"
    assert new_revision_command(pretend, ["connections: held"]) == 0
    written = tmp_path / "revisions" / "versions" / f"{following}_connections_held.py"
    assert f"wrote {written}" in capsys.readouterr().out
    source = written.read_text()
    assert f'down_revision = "{head}"' in source and 'batch_op.add_column(sa.Column("held"' in source
    lint = [sys.executable, "-m", "ruff"]
    assert subprocess.run([*lint, "format", "--check", "--quiet", str(written)]).returncode == 0
    assert subprocess.run([*lint, "check", "--quiet", str(written)]).returncode == 0
    assert pretend.head == following

    async def agree() -> list[object]:
        url = f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"
        await on(url, pretend.upgrade)
        return await on(url, lambda db: differences(pretend, db))

    assert asyncio.run(agree()) == []


async def test_the_revision_command_refuses_a_database_that_is_not_empty(sqlite_url: str, tmp_path: Path) -> None:
    await _open_both(sqlite_url)
    pretend = _pretend_changed(tmp_path)
    with pytest.raises(ConfigurationError, match="empty scratch database"):
        await on(sqlite_url, lambda db: new_revision(pretend, db, "held"))
    written = {path.name for path in (tmp_path / "revisions" / "versions").glob("wattfare_*.py")}
    assert written == {Path(revision.path).name for revision in embed_migrations.script.walk_revisions()}
