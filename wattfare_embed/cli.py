"""The ``wattfare`` command: keys, migrations, a user's status, the usage ledger."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._migrate_command import add_migrate_options
from .auth import app_user_id_of
from .consent_domain.commands import add_consent_domain_commands
from .errors import ConfigurationError, WattfareError
from .keys import new_key_pair
from .money import usd_text

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["main"]


def _keys_new(args: argparse.Namespace) -> int:
    pair = new_key_pair(live=not args.test)
    if args.env:
        print(f"WATTFARE_SECRET_KEY={pair.secret_key}")
        print(f"WATTFARE_PUBLISHABLE_KEY={pair.publishable_key}")
    else:
        print(f"secret key (server only): {pair.secret_key}")
        print(f"publishable key (browser): {pair.publishable_key}")
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    from ._migrate_command import run_migrate
    from .store import migrations

    return await run_migrate(migrations, args)


def _embed(args: argparse.Namespace) -> Wattfare:
    from .app import Wattfare
    from .consent import OpenRouterConsent

    # Reading state needs no consent page; an explicit authority lets live keys through too
    # (the default, DevConsent, refuses them).
    return Wattfare(database_url=args.database_url, consent=OpenRouterConsent())


async def _status(args: argparse.Namespace) -> int:
    app_user_id_of(args.user, "USER")
    embed = _embed(args)
    async with embed:
        print(json.dumps((await embed.status(args.user)).to_json(), indent=2))
    return 0


async def _usage(args: argparse.Namespace) -> int:
    if args.user is not None:
        app_user_id_of(args.user, "--user")
    if args.month is not None:
        return await _month_report(args)
    if args.format != "table":
        raise ConfigurationError("--format csv or json is for a month's report: add --month YYYY-MM")
    embed = _embed(args)
    async with embed:
        rows = await embed.store.ledger(embed.keys.app_id, args.user, limit=args.limit)
    print(f"{'request':<28} {'user':<16} {'model':<32} {'state':<9} {'cost USD':>12} source")
    for row in rows:
        cost = usd_text(row.cost) if row.cost is not None else "-"
        user, model, source = row.app_user_id[:16], row.model[:32], row.cost_source or ""
        print(f"{row.id:<28} {user:<16} {model:<32} {row.state:<9} {cost:>12} {source}")
    return 0


async def _month_report(args: argparse.Namespace) -> int:
    from .reports import ReportLine, focus_rows, parse_month, render

    try:
        month = parse_month(args.month)
    except ValueError as exc:
        raise ConfigurationError(f"--month: {exc}") from exc
    embed = _embed(args)
    async with embed:
        totals = await embed.store.month_totals(embed.keys.app_id, month)
    app_id = embed.keys.app_id
    lines = [
        ReportLine(
            billing_account=app_id,
            billing_account_name=args.app_name or app_id,
            sub_account=total.app_user_id,
            app_id=app_id,
            model=total.model,
            requests=total.requests,
            cost=total.cost,
            estimated_cost=total.estimated_cost,
            tokens_in=total.tokens_in,
            tokens_out=total.tokens_out,
        )
        for total in totals
        if args.user is None or total.app_user_id == args.user
    ]
    sys.stdout.write(render(focus_rows(lines, month), "csv" if args.format == "table" else args.format))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wattfare", description="wattfare_embed command line")
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="make app keys").add_subparsers(dest="keys_command", required=True)
    keys_new = keys.add_parser("new", help="print a fresh key pair")
    keys_new.add_argument("--test", action="store_true", help="test keys (development consent allowed)")
    keys_new.add_argument("--env", action="store_true", help="print as environment variable lines")
    keys_new.set_defaults(run=_keys_new)

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", default=None, help="default: $WATTFARE_DATABASE_URL or sqlite")

    migrate = commands.add_parser(
        "migrate", parents=[database], help="upgrade the wattfare tables (or check them, or print the SQL)"
    )
    add_migrate_options(migrate)
    migrate.set_defaults(run_async=_migrate)
    status = commands.add_parser("status", parents=[database], help="a user's connection and budget")
    status.add_argument("user")
    status.set_defaults(run_async=_status)
    usage = commands.add_parser(
        "usage", parents=[database], help="recent metered requests, or a month's report (--month) in FOCUS columns"
    )
    usage.add_argument("--user", default=None)
    usage.add_argument("--limit", type=int, default=50)
    usage.add_argument("--month", default=None, help="YYYY-MM: per user and model, exact, in FOCUS columns")
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table", help="for --month: csv or json")
    usage.add_argument("--app-name", default=None, help="BillingAccountName in the report (default: the app id)")
    usage.set_defaults(run_async=_usage)
    add_consent_domain_commands(commands)

    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "migrate" and args.database_url is None:
        from .config import DEFAULT_DATABASE_URL, env_or

        args.database_url = env_or(None, "WATTFARE_DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        if hasattr(args, "run_async"):
            code: int = asyncio.run(args.run_async(args))
            return code
        return int(args.run(args))
    except ConfigurationError as exc:
        print(f"wattfare: {exc}", file=sys.stderr)
        return 2
    except WattfareError as exc:  # a user id outside the rule, say
        print(f"wattfare: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
