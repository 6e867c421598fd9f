"""``python -m wattfare_embed.store.revisions "what changed"``: write the next revision (developers).

It upgrades a scratch database (a temporary SQLite file, or ``--database-url`` for an empty
PostgreSQL database) to the newest revision, compares it with ``schema.py`` (Alembic's
autogenerate, batch operations for SQLite's ALTERs), writes ``versions/<next id>_<slug>.py``
and formats it with ruff. Read the file before committing it: autogenerate does not see
renames, data changes or server defaults it cannot compare.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._migrations import Migrations, new_revision
from ._runner import runner_for_url

__all__ = ["main"]


async def _write(migrations: Migrations, database_url: str, message: str) -> str:
    runner = runner_for_url(database_url)
    try:
        return await runner.run(lambda connection: new_revision(migrations, connection, message))
    finally:
        await runner.dispose()


def main(migrations: Migrations, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("message", help='what the revision changes, e.g. "ledger: held amounts"')
    parser.add_argument("--database-url", default=None, help="a scratch database (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'scratch.db'}"
        path = asyncio.run(_write(migrations, url, args.message))
    for ruff in (["check", "--fix", "--quiet"], ["format", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *ruff, path], check=False)
    print(f"wrote {path}")
    return 0
