"""``wattfare migrate`` and ``wattfare consent-domain migrate``: upgrade, check, or print the SQL."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.engine import make_url

from .errors import ConfigurationError
from .store._migrations import LEGACY_RELEASE, Migrations
from .store._runner import runner_for_url

__all__ = ["add_migrate_options", "run_migrate"]


def add_migrate_options(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL instead of running it (offline: only the URL's dialect is used)",
    )
    mode.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 unless the tables are at this release's revision",
    )
    parser.add_argument(
        "--from",
        dest="since",
        default=None,
        metavar="REVISION",
        help=f"with --sql: the revision the database is at ({LEGACY_RELEASE} for tables that release made; "
        "default: an empty database)",
    )


async def run_migrate(migrations: Migrations, args: argparse.Namespace) -> int:
    url = make_url(args.database_url)
    if args.since is not None and not args.sql:
        print("--from goes with --sql", file=sys.stderr)
        return 2
    if args.sql:
        print(migrations.sql(url.get_backend_name(), since=args.since), end="")
        return 0
    shown = url.render_as_string(hide_password=True)
    runner = runner_for_url(args.database_url)
    try:
        if args.check:
            try:
                await runner.run(migrations.check)
            except ConfigurationError as exc:
                print(f"{shown}: {exc}")
                return 1
            print(f"{migrations.label} tables are up to date in {shown} (revision {migrations.head})")
            return 0
        before = await migrations.upgrade_with(runner)
    finally:
        await runner.dispose()
    if before == migrations.head:
        print(f"{migrations.label} tables are up to date in {shown} (revision {migrations.head})")
    elif before is None:
        print(f"{migrations.label} tables created in {shown} (revision {migrations.head})")
    else:
        print(f"{migrations.label} tables upgraded from {before} to {migrations.head} in {shown}")
    return 0
