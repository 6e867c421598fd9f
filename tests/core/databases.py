"""Databases of their own for the migration tests, and what a migrated database looks like.

The PostgreSQL ones are made from the test server's URL (``<its database>_<suffix>``) and dropped
afterwards, so CI's own ``test`` database works the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Connection, Index, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

from tests.conftest import POSTGRES_URL, require_postgres
from wattfare_embed.store._migrations import Migrations
from wattfare_embed.store._postgres import _connect_kwargs, asyncpg_url
from wattfare_embed.store._runner import runner_for_url

T = TypeVar("T")


@asynccontextmanager
async def fresh_postgres(suffix: str) -> AsyncIterator[str]:
    """An empty PostgreSQL database for one test, dropped afterwards (even by a later run)."""
    require_postgres()
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_{suffix}"
    admin_url = asyncpg_url(POSTGRES_URL)
    assert admin_url is not None
    admin = await asyncpg.connect(**_connect_kwargs(admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path, suffix: str = "fresh") -> AsyncIterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / f'{suffix}.db'}"
        return
    async with fresh_postgres(suffix) as url:
        yield url


async def on(database_url: str, operation: Callable[[Connection], T]) -> T:
    """Run one transaction on a database through the store's own runner."""
    runner = runner_for_url(database_url)
    try:
        return await runner.run(operation)
    finally:
        await runner.dispose()


def differences(migrations: Migrations, connection: Connection) -> list[Any]:
    """What the set's models and the database disagree on: Alembic's compare, plus CHECK constraints."""
    context = MigrationContext.configure(
        connection,
        opts={
            "version_table": migrations.version_table,
            "include_name": lambda name, type_, parents: type_ != "table" or migrations.owns(name),
            "compare_type": True,
        },
    )
    found: list[Any] = list(compare_metadata(context, migrations.metadata))
    inspector = inspect(connection)
    for table in migrations.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue  # compare_metadata reported it
        wanted = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        present = {c["name"] for c in inspector.get_check_constraints(table.name)}
        if wanted != present:
            found.append(("check_constraints", table.name, sorted(wanted), sorted(present)))
        found += _partial_index_differences(connection, table)
    return found


def _partial_index_differences(connection: Connection, table: Any) -> list[Any]:
    """Indexes whose WHERE the database and the models disagree on (Alembic's compare skips it). The
    model's index is built beside the real one, in a savepoint rolled back, so that the database
    states both conditions its own way and the two texts compare."""
    dialect = connection.dialect.name
    key = f"{dialect}_where"

    def conditions() -> dict[str, str | None]:
        reflected = inspect(connection).get_indexes(table.name)
        return {i["name"]: _text(i.get("dialect_options", {}).get(key)) for i in reflected if i["name"]}

    present = conditions()
    found: list[Any] = []
    for index in table.indexes:
        where = index.dialect_options[dialect]["where"]
        wanted = None
        if where is not None:
            model = Index("wattfare_check_where", *index.expressions, **{key: where})
            savepoint = connection.begin_nested()
            try:
                connection.execute(CreateIndex(model))
                wanted = conditions()["wattfare_check_where"]
            finally:
                savepoint.rollback()
                table.indexes.discard(model)
        if present.get(index.name) != wanted:
            found.append(("index_where", index.name, wanted, present.get(index.name)))
    return found


def _text(condition: Any) -> str | None:
    return None if condition is None else str(condition)


def schema_of(migrations: Migrations, connection: Connection) -> dict[str, Any]:
    """Everything the database says about the set's tables (not its version table), comparable."""
    inspector = inspect(connection)
    found: dict[str, Any] = {}
    for table in sorted(tables_of(migrations, connection) - {migrations.version_table}):
        found[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "checks": sorted((c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)),
        }
    return found


def tables_of(migrations: Migrations, connection: Connection) -> set[str]:
    return {name for name in inspect(connection).get_table_names() if migrations.owns(name)}


__all__ = ["differences", "fresh_database", "fresh_postgres", "on", "schema_of", "tables_of"]
