"""``wattfare consent-domain set-budget | budgets | set-role``: per-user budgets from the command line.

A budget set here is written at once; a running domain re-limits the user's keys to it at its
next pass (``budget_sync_seconds``, 30 by default), at the user's next consent or page view.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..money import micros_from_usd, usd_text

__all__ = ["add_budget_commands"]


def _amount(text: str) -> int:
    try:
        micros = micros_from_usd(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if micros < 0:
        raise argparse.ArgumentTypeError("a budget is zero or more dollars")
    return micros


async def _user_id(store: Any, args: argparse.Namespace) -> str | None:
    from .login import normalize_email

    if args.user_id is not None:
        return str(args.user_id)
    found = await store.find_user(normalize_email(args.email))
    if found is None:
        print(f"error: no user with the email {args.email!r}", file=sys.stderr)
        return None
    return str(found[0])


async def _set_budget(args: argparse.Namespace) -> int:
    import time

    from . import budget_store
    from .storage import DomainStore

    if (args.usd is None) == (not args.remove):
        print("error: give the budget with --usd, or --remove it", file=sys.stderr)
        return 2
    budget = None if args.remove else args.usd
    store = DomainStore(args.database_url)
    await store.open()
    try:
        if args.default:
            await budget_store.set_default_budget(store, budget)
            who = "every user without a budget of their own"
        else:
            user_id = await _user_id(store, args)
            if user_id is None:
                return 2
            await budget_store.set_user_budget(store, user_id, budget, int(time.time()))
            who = args.email or user_id
    finally:
        await store.close()
    shown = "removed" if budget is None else f"${usd_text(budget)} a month across every app"
    print(f"budget for {who}: {shown}")
    return 0


async def _list_budgets(args: argparse.Namespace) -> int:
    from . import budget_store
    from .storage import DomainStore

    store = DomainStore(args.database_url)
    await store.open()
    try:
        default = await budget_store.default_budget(store)
        budgets = await budget_store.user_budgets(store)
        emails = {user_id: await store.user_email(user_id) for user_id in budgets}
    finally:
        await store.close()
    print(f"default: {'$' + usd_text(default) if default is not None else 'none (each app within its own cap)'}")
    for user_id, budget in sorted(budgets.items()):
        print(f"{emails.get(user_id) or user_id}: ${usd_text(budget)}")
    return 0


async def _set_role(args: argparse.Namespace) -> int:
    from . import budget_store
    from .login import normalize_email
    from .storage import DomainStore

    store = DomainStore(args.database_url)
    await store.open()
    try:
        role = budget_store.OPERATOR if args.operator else None
        changed = await budget_store.set_role(store, normalize_email(args.email), role)
    finally:
        await store.close()
    if not changed:
        print(f"error: no user with the email {args.email!r}", file=sys.stderr)
        return 2
    print(f"{args.email} is {'an operator' if role else 'a user'}")
    return 0


async def _usage_report(args: argparse.Namespace) -> int:
    from ..reports import ReportLine, focus_rows, parse_month, render
    from . import budget_store
    from .storage import DomainStore

    try:
        month = parse_month(args.month)
    except ValueError as exc:
        print(f"error: --month: {exc}", file=sys.stderr)
        return 2
    store = DomainStore(args.database_url)
    await store.open()
    try:
        usage = await budget_store.month_usage(store, month)
    finally:
        await store.close()
    lines = [
        ReportLine(
            billing_account=args.account,
            billing_account_name=args.account,
            sub_account=email or user_id,
            app_id=app_id,
            model=app_id,
            requests=None,
            cost=spent,
            estimated_cost=0,
            tokens_in=0,
            tokens_out=0,
            resource_type="App",
            resource_name=app_name,
        )
        for user_id, email, app_id, app_name, spent in usage
    ]
    sys.stdout.write(render(focus_rows(lines, month), args.format))
    return 0


def add_budget_commands(domain: Any, database: argparse.ArgumentParser) -> None:
    budget = domain.add_parser(
        "set-budget", parents=[database], help="a user's monthly budget across every app (or the default)"
    )
    who = budget.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="a built-in user")
    who.add_argument("--user-id", help="a user id as the deployment's own login names it")
    who.add_argument("--default", action="store_true", help="everyone without a budget of their own")
    budget.add_argument("--usd", type=_amount, default=None, help="dollars a month, e.g. 10")
    budget.add_argument("--remove", action="store_true", help="remove it (back to the default, or no budget)")
    budget.set_defaults(run_async=_set_budget)

    listing = domain.add_parser("budgets", parents=[database], help="the default budget and every user's own")
    listing.set_defaults(run_async=_list_budgets)

    usage = domain.add_parser(
        "usage", parents=[database], help="a month's spend per user and app, in FOCUS columns (csv or json)"
    )
    usage.add_argument("--month", required=True, help="YYYY-MM")
    usage.add_argument("--format", choices=("csv", "json"), default="csv")
    usage.add_argument("--account", default="consent-domain", help="BillingAccountId / Name (default: consent-domain)")
    usage.set_defaults(run_async=_usage_report)

    role = domain.add_parser("set-role", parents=[database], help="make a built-in user an operator (or not)")
    role.add_argument("--email", required=True)
    chosen = role.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--operator", action="store_true", help="may set budgets on /operator")
    chosen.add_argument("--user", action="store_true", help="an ordinary user again")
    role.set_defaults(run_async=_set_role)
