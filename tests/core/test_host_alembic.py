"""An app running its own Alembic, with the README's ``do_run_migrations``, gets both histories right.

The host's ``env.py`` is Alembic's own async template with the README's snippet pasted in, as an
integrator would do it: its revisions land in ``alembic_version`` and ours in
``wattfare_alembic_version`` (a), and its autogenerate never proposes touching our tables (b).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import alembic
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect, text

from tests.core.databases import fresh_database, on
from wattfare_embed import SqlStore
from wattfare_embed.store import migrations

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = Path(alembic.__file__).parent / "templates" / "async"
HOST_MODELS = """
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("body", String(200)))
"""


def readme_snippet() -> str:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (snippet,) = [block for block in blocks if "def do_run_migrations" in block]
    return snippet


def host_env(snippet: str) -> str:
    """Alembic's async ``env.py`` with the host's models and the snippet's ``do_run_migrations``."""
    env = (TEMPLATE / "env.py").read_text()
    env = env.replace("target_metadata = None", "from host_app.models import metadata as target_metadata")
    start = env.index("def do_run_migrations")
    end = env.index("async def run_async_migrations")
    return env[:start] + snippet + "\n\n" + env[end:]


@pytest.fixture
def host_project(tmp_path: Path) -> Iterator[Path]:
    project = tmp_path / "host"
    (project / "host_app").mkdir(parents=True)
    (project / "host_app" / "__init__.py").write_text("")
    (project / "host_app" / "models.py").write_text(HOST_MODELS)
    (project / "migrations" / "versions").mkdir(parents=True)
    (project / "migrations" / "script.py.mako").write_text((TEMPLATE / "script.py.mako").read_text())
    sys.path.insert(0, str(project))
    try:
        yield project
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("host_app.models", None)
        sys.modules.pop("host_app", None)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path, "host") as database_url:
        yield database_url


def _config(project: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(project / "migrations"))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", database_url)
    return config


async def _alembic(function: object, *args: object, **kwargs: object) -> object:
    # The template's env.py calls asyncio.run, as the `alembic` command does: give it a thread.
    return await asyncio.to_thread(function, *args, **kwargs)  # type: ignore[arg-type]


def _versions(db: Connection) -> tuple[list[str], list[str], set[str]]:
    host = list(db.execute(text("SELECT version_num FROM alembic_version")).scalars())
    ours = list(db.execute(text("SELECT version_num FROM wattfare_alembic_version")).scalars())
    return host, ours, set(inspect(db).get_table_names())


async def test_the_hosts_alembic_applies_our_revisions_and_leaves_our_tables_out_of_autogenerate(
    host_project: Path, url: str
) -> None:
    (host_project / "migrations" / "env.py").write_text(host_env(readme_snippet()))
    config = _config(host_project, url)

    await _alembic(command.upgrade, config, "head")  # the host has no revision yet: ours still apply
    host, ours, tables = await on(url, _versions)
    assert (host, ours) == ([], [migrations.head]) and {"wattfare_ledger", "wattfare_connections"} <= tables

    await _alembic(command.revision, config, "notes", autogenerate=True, rev_id="host_0001")
    (revision,) = (host_project / "migrations" / "versions").glob("host_0001_*.py")
    source = revision.read_text()
    assert "op.create_table('notes'" in source or 'op.create_table("notes"' in source
    assert "wattfare_" not in source

    await _alembic(command.upgrade, config, "head")
    host, ours, tables = await on(url, _versions)
    assert (host, ours) == (["host_0001"], [migrations.head]) and "notes" in tables
    store = SqlStore(url, auto_migrate=False)  # the app's start-up check agrees
    await store.open()
    await store.close()


async def test_without_the_filter_the_hosts_autogenerate_would_drop_our_tables(host_project: Path, url: str) -> None:
    snippet = re.sub(r"\n\s*include_name=.*", "", readme_snippet())
    assert "include_name" not in snippet.split("context.run_migrations()")[0]
    (host_project / "migrations" / "env.py").write_text(host_env(snippet))
    config = _config(host_project, url)
    await _alembic(command.upgrade, config, "head")
    await _alembic(command.revision, config, "careless", autogenerate=True, rev_id="host_0001")
    (revision,) = (host_project / "migrations" / "versions").glob("host_0001_*.py")
    assert re.search(r"op\.drop_table\(['\"]wattfare_ledger['\"]\)", revision.read_text())
