"""``Migrations``: one set of our tables and the Alembic revisions that build them.

The embed's ``wattfare_`` tables and the consent domain's ``wcd_`` tables are each a set, with
a script directory inside the package (``env.py``, the revision template, ``versions/``) and a
version table of their own, so a host's ``alembic_version`` is never touched.

Start-up upgrades (or, with automatic migration off, only checks) in one transaction through
the store's own runner, under a lock, so processes starting together never race on a fresh
database: on PostgreSQL an advisory lock held until commit, on SQLite the file's write lock
that the runner's ``BEGIN IMMEDIATE`` takes. A database made by 0.1.0's ``create_all`` (no
version table, its tables present) is adopted: stamped at the first revision, which is exactly
that schema, then upgraded like any other.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.exc import DBAPIError

from ..errors import ConfigurationError
from ._runner import TransactionRunner

__all__ = ["LEGACY_RELEASE", "Migrations", "run_environment"]

# What ``--from`` names for a database that 0.1.0 created, before there were revisions.
LEGACY_RELEASE = "0.1.0"

# How long a process waits for another one's migration (and a migration for a table lock).
LOCK_TIMEOUT_SECONDS = 300

# Alembic runs revisions through module-level proxies (``alembic.op``, ``alembic.context``), so
# two migrations in one process must not interleave: on one event loop a coroutine lock (a
# PostgreSQL migration yields to the loop at every round trip), across threads this one.
_ALEMBIC = threading.Lock()
_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _loop_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _LOOP_LOCKS.get(loop)
    if lock is None:
        lock = _LOOP_LOCKS[loop] = asyncio.Lock()
    return lock


class Migrations:
    """A set of tables (one name prefix), its revisions and its own version table.

    For a host's own Alembic ``env.py``: ``upgrade(connection)`` applies these revisions on the
    host's connection (recorded in this set's version table), and ``include_name`` /
    ``include_object`` keep these tables out of the host's autogenerate (README, "Migrations").
    """

    def __init__(
        self,
        *,
        label: str,
        script_location: str,
        version_table: str,
        metadata: MetaData,
        table_prefix: str,
        legacy_marker: str,
        first_revision: str,
        command: str,
    ) -> None:
        self.label = label
        self.script_location = script_location
        self.version_table = version_table
        self.metadata = metadata
        self.table_prefix = table_prefix
        # A table only a 0.1.0 database of this set has, and the revision equal to that schema.
        self.legacy_marker = legacy_marker
        self.first_revision = first_revision
        self.command = command
        digest = hashlib.sha256(f"wattfare_embed migrations {version_table}".encode()).digest()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._script: ScriptDirectory | None = None

    # -- what the package holds -------------------------------------------------------------

    def config(self, **attributes: Any) -> Config:
        """An Alembic ``Config`` for this set, built in code (there is no ``alembic.ini``)."""
        config = Config(output_buffer=attributes.pop("output_buffer", None))
        config.set_main_option("script_location", self.script_location)
        config.set_main_option("path_separator", "os")
        config.attributes.update(migrations=self, **attributes)
        return config

    @property
    def script(self) -> ScriptDirectory:
        if self._script is None:
            self._script = ScriptDirectory.from_config(self.config())
        return self._script

    @property
    def head(self) -> str:
        """The revision this release's schema is at."""
        head = self.script.get_current_head()
        assert head is not None, f"{self.script_location} has no revisions"
        return head

    # -- on a connection (sync: the store's runner, or a host's env.py) ---------------------

    def current(self, connection: Connection) -> str | None:
        """The revision recorded in this set's version table, ``None`` when there is none."""
        context = MigrationContext.configure(connection, opts={"version_table": self.version_table})
        return context.get_current_revision()

    def upgrade(self, connection: Connection, revision: str = "head") -> str | None:
        """Bring this set's tables to ``revision`` on ``connection``, under the migration lock, and commit.

        For a host's ``env.py``: call it after its own ``with context.begin_transaction()`` block
        (a transaction Alembic's reads left open is committed with it). Returns the revision the
        database was at: ``None`` for none of these tables, ``"0.1.0"`` for tables that release made.
        """
        before = self._upgrade(connection, revision)
        if connection.in_transaction():
            connection.commit()
        return before

    def _upgrade(self, connection: Connection, revision: str = "head") -> str | None:
        """``upgrade`` inside the connection's transaction, if one is open (its owner commits)."""
        with _ALEMBIC, _callers_alembic_kept(), _transaction(connection):
            self._lock(connection)
            before = self.current(connection)
            if before is None and self._is_legacy(connection):
                command.stamp(self.config(connection=connection), self.first_revision)
                before = LEGACY_RELEASE
            elif before is not None:
                self._refuse_unknown(before)
            command.upgrade(self.config(connection=connection), revision)
            return before

    def check(self, connection: Connection) -> None:
        """Raise ``ConfigurationError`` unless the database is at this release's revision."""
        current, head = self.current(connection), self.head
        if current == head:
            return
        how = (
            f"run `{self.command}` (or apply the SQL of `{self.command} --sql`) first, "
            "or start with automatic migration on"
        )
        if current is not None:
            self._refuse_unknown(current)
            raise ConfigurationError(
                f"the {self.label} tables are at revision {current} and this release needs {head}: {how}"
            )
        if self._is_legacy(connection):
            raise ConfigurationError(
                f"the {self.label} tables were made by wattfare_embed {LEGACY_RELEASE} and are not migrated "
                f"yet (this release needs revision {head}): {how}"
            )
        raise ConfigurationError(f"the database has no {self.label} tables (this release needs revision {head}): {how}")

    async def prepare(self, runner: TransactionRunner, *, automatic: bool) -> None:
        """Start-up: upgrade to this release's revision, or only check it when ``automatic`` is off."""
        async with _loop_lock():
            if automatic:
                await runner.run(self._upgrade)
            else:
                await runner.run(self.check)

    async def upgrade_with(self, runner: TransactionRunner) -> str | None:
        """``upgrade`` through a store's runner; the revision the database was at."""
        async with _loop_lock():
            return await runner.run(self._upgrade)

    # -- offline ----------------------------------------------------------------------------

    def sql(self, dialect_name: str, since: str | None = None) -> str:
        """The SQL that upgrades a database to this release, for a DBA to review and apply.

        ``since``: the revision the database is at (``current``), ``"0.1.0"`` for a database
        that release created, ``None`` for an empty one.
        """
        buffer = io.StringIO()
        with _ALEMBIC:
            config = self.config(output_buffer=buffer, dialect_name=dialect_name)
            try:
                if since == LEGACY_RELEASE:
                    command.stamp(config, self.first_revision, sql=True)
                    since = self.first_revision
                if since is not None:
                    self.script.get_revision(since)
                command.upgrade(config, f"{since}:head" if since else "head", sql=True)
            except CommandError as exc:
                raise ConfigurationError(f"{since!r} is not a {self.label} revision: {exc}") from exc
        return buffer.getvalue()

    # -- a host's autogenerate ------------------------------------------------------------

    def owns(self, table_name: str | None) -> bool:
        return bool(table_name) and str(table_name).startswith(self.table_prefix)

    def include_name(self, name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
        """``include_name`` for a host's ``context.configure``: everything but these tables."""
        if type_ == "table":
            return not self.owns(name)
        return not self.owns(parent_names.get("table_name"))

    def include_object(self, object_: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        """``include_object`` for a host that put these tables in its ``target_metadata``."""
        if type_ == "table":
            return not self.owns(name)
        table = getattr(object_, "table", None)
        return not self.owns(getattr(table, "name", None))

    # -- inside ------------------------------------------------------------------------------

    def _lock(self, connection: Connection) -> None:
        if connection.dialect.name != "postgresql":
            return  # SQLite: the transaction holds the file's write lock (``BEGIN IMMEDIATE``)
        # The timeout is local to this transaction: the lock wait and the migration's own DDL.
        connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"))
        try:
            connection.execute(text(f"SELECT pg_advisory_xact_lock({self.lock_key})"))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available: the timeout
                raise
            raise TimeoutError(
                f"another process has been migrating the {self.label} tables for {LOCK_TIMEOUT_SECONDS} s"
            ) from exc

    def _is_legacy(self, connection: Connection) -> bool:
        """Whether these tables are there without a version table: 0.1.0's ``create_all``."""
        tables = set(inspect(connection).get_table_names())
        if self.legacy_marker in tables:
            return True
        found = sorted(name for name in tables if self.owns(name) and name != self.version_table)
        if found:
            raise ConfigurationError(
                f"the database has {self.label} tables ({', '.join(found)}) but neither {self.version_table} "
                f"nor {self.legacy_marker}, so their revision is unknown; restore them or drop them"
            )
        return False

    def _refuse_unknown(self, revision: str) -> None:
        try:
            self.script.get_revision(revision)
        except CommandError:
            raise ConfigurationError(
                f"the {self.label} tables are at revision {revision}, which this release of wattfare_embed does "
                f"not know: a newer release migrated them; run that release (never an older one on a newer schema)"
            ) from None


@contextmanager
def _callers_alembic_kept() -> Iterator[None]:
    """Put back the ``alembic.context`` and ``alembic.op`` of a run this one is nested in.

    A host's ``env.py`` calls ``upgrade`` inside its own Alembic run; ours replaces the module
    proxies on entry and deletes them on exit, which would leave the host's run without them.
    """
    import alembic.context
    import alembic.op

    previous = [vars(module).get("_proxy") for module in (alembic.context, alembic.op)]
    try:
        yield
    finally:
        for proxy in previous:
            if proxy is not None:
                proxy._install_proxy()


@contextmanager
def _transaction(connection: Connection) -> Iterator[None]:
    """The connection's open transaction (its owner commits), or a new one committed here."""
    if connection.in_transaction():
        yield
        return
    with connection.begin():
        yield


def run_environment() -> None:
    """The body of each script directory's ``env.py`` (``context`` is Alembic's, set for this run)."""
    config = context.config
    migrations: Migrations = config.attributes["migrations"]
    options: dict[str, Any] = {
        "target_metadata": migrations.metadata,
        "version_table": migrations.version_table,
        # Only this set's tables exist for its autogenerate, whatever else shares the database.
        "include_name": lambda name, type_, parents: type_ != "table" or migrations.owns(name),
        # SQLite has no ALTER for most changes: autogenerate writes them as batch operations.
        "render_as_batch": True,
        "compare_type": True,
        # SQLite's DDL is transactional too: the offline SQL for it gets BEGIN and COMMIT.
        "transactional_ddl": True,
    }
    if context.is_offline_mode():
        dialect_name = config.attributes["dialect_name"]
        context.configure(dialect_name=dialect_name, literal_binds=True, **options)
        with context.begin_transaction():
            if dialect_name == "postgresql":
                context.execute(f"SELECT pg_advisory_xact_lock({migrations.lock_key})")
            context.run_migrations()
        return
    context.configure(connection=config.attributes["connection"], **options)
    with context.begin_transaction():
        context.run_migrations()


def new_revision(migrations: Migrations, connection: Connection, message: str) -> str:
    """Write the next revision file: what ``schema.py`` has that a database at head lacks.

    ``connection`` is an empty scratch database; it is upgraded to head first, then compared
    (Alembic's autogenerate). Returns the new file's path.
    """
    if inspect(connection).get_table_names():
        raise ConfigurationError("a new revision is compared on an empty scratch database; this one has tables")
    migrations._upgrade(connection)
    number = int(migrations.head.rsplit("_", 1)[1]) + 1
    with _ALEMBIC:
        script = command.revision(
            migrations.config(connection=connection),
            message,
            autogenerate=True,
            rev_id=f"{migrations.table_prefix}{number:04d}",
        )
    assert script is not None and not isinstance(script, list)
    migrations._script = None  # the next `head` reads the new file too
    return str(script.path)
