"""The consent domain's budget rows: per-user budgets, the operator's default, key limits, fired
thresholds and operator roles. Every function is one transaction on the domain's store."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..money import Micros
from . import schema
from .records import GrantState, NewJob
from .storage import DomainStore, _queue

__all__ = [
    "DEFAULT_BUDGET_SETTING",
    "OPERATOR",
    "budget_of",
    "budget_overview",
    "budgeted_users",
    "default_budget",
    "fire_budget_alert",
    "is_operator",
    "month_usage",
    "record_usage",
    "set_default_budget",
    "set_key_limit",
    "set_role",
    "set_user_budget",
    "user_budgets",
]

DEFAULT_BUDGET_SETTING = "default_monthly_budget"  # micro-dollars, as text; absent: no default
OPERATOR = "operator"
_B, _S, _G, _U = schema.budgets.c, schema.settings.c, schema.grants.c, schema.users.c


async def set_user_budget(store: DomainStore, user_id: str, budget: Micros | None, now: int) -> None:
    """Set one user's budget (``None``: back to the operator's default)."""

    def operation(db: Connection) -> None:
        db.execute(delete(schema.budgets).where(_B.user_id == user_id))
        if budget is not None:
            db.execute(insert(schema.budgets).values(user_id=user_id, monthly_budget=budget, updated_at=now))

    await store.runner.run(operation)


async def set_default_budget(store: DomainStore, budget: Micros | None) -> None:
    """The budget of every user without one of their own (``None``: no budget, each app's cap alone)."""

    def operation(db: Connection) -> None:
        db.execute(delete(schema.settings).where(_S.name == DEFAULT_BUDGET_SETTING))
        if budget is not None:
            db.execute(insert(schema.settings).values(name=DEFAULT_BUDGET_SETTING, value=str(budget)))

    await store.runner.run(operation)


async def default_budget(store: DomainStore) -> Micros | None:
    def operation(db: Connection) -> Micros | None:
        value = db.execute(select(_S.value).where(_S.name == DEFAULT_BUDGET_SETTING)).scalar()
        return int(value) if value is not None else None

    return await store.runner.run(operation)


async def budget_of(store: DomainStore, user_id: str) -> Micros | None:
    """The user's own budget, else the default, else ``None`` (no budget across apps)."""

    def operation(db: Connection) -> Micros | None:
        own = db.execute(select(_B.monthly_budget).where(_B.user_id == user_id)).scalar()
        if own is not None:
            return int(own)
        value = db.execute(select(_S.value).where(_S.name == DEFAULT_BUDGET_SETTING)).scalar()
        return int(value) if value is not None else None

    return await store.runner.run(operation)


async def user_budgets(store: DomainStore) -> dict[str, Micros]:
    """Every budget set per user."""

    def operation(db: Connection) -> dict[str, Micros]:
        return {row.user_id: int(row.monthly_budget) for row in db.execute(select(schema.budgets)).all()}

    return await store.runner.run(operation)


async def budgeted_users(store: DomainStore) -> list[str]:
    """Users with an active grant, to keep their keys within their budgets."""

    def operation(db: Connection) -> list[str]:
        query = select(_G.user_id).where(_G.status == GrantState.ACTIVE).distinct().order_by(_G.user_id)
        return [str(user) for user in db.execute(query).scalars()]

    return await store.runner.run(operation)


async def set_key_limit(store: DomainStore, grant_id: str, limit: Micros) -> None:
    await store.runner.run(
        lambda db: db.execute(update(schema.grants).where(_G.id == grant_id).values(key_limit=limit))
    )


async def fire_budget_alert(
    store: DomainStore, user_id: str, period: str, percent: int, now: int, jobs: Sequence[NewJob]
) -> bool:
    """Record that the user passed ``percent`` % this month and queue its notice, once: True if this
    call did (a second caller, in this process or another, meets the key)."""

    def operation(db: Connection) -> None:
        db.execute(insert(schema.budget_alerts).values(user_id=user_id, period=period, percent=percent, fired_at=now))
        _queue(db, jobs)

    try:
        await store.runner.run(operation)
    except IntegrityError:
        return False
    return True


async def set_role(store: DomainStore, email: str, role: str | None) -> bool:
    """Make a built-in user an operator (or a user again); False when there is no such user."""

    def operation(db: Connection) -> bool:
        return db.execute(update(schema.users).where(_U.email == email).values(role=role)).rowcount == 1

    return await store.runner.run(operation)


async def is_operator(store: DomainStore, user_id: str) -> bool:
    def operation(db: Connection) -> bool:
        return db.execute(select(_U.role).where(_U.id == user_id)).scalar() == OPERATOR

    return await store.runner.run(operation)


async def budget_overview(store: DomainStore) -> list[tuple[str, str | None, Micros | None]]:
    """``(user id, email, own budget)`` for every built-in user and every user with a budget."""

    def operation(db: Connection) -> list[tuple[str, str | None, Micros | None]]:
        emails = {row.id: row.email for row in db.execute(select(_U.id, _U.email)).all()}
        budgets = {row.user_id: int(row.monthly_budget) for row in db.execute(select(schema.budgets)).all()}
        users = sorted(set(emails) | set(budgets), key=lambda user: emails.get(user) or user)
        return [(user, emails.get(user), budgets.get(user)) for user in users]

    return await store.runner.run(operation)


async def record_usage(store: DomainStore, readings: Sequence[tuple[str, Micros]], period: str, now: int) -> None:
    """Keep each grant's latest reported spend for ``period`` (one row per grant and month)."""
    if not readings:
        return
    _GU = schema.grant_usage.c

    def operation(db: Connection) -> None:
        for grant_id, spent in readings:
            changed = db.execute(
                update(schema.grant_usage)
                .where(_GU.grant_id == grant_id, _GU.period == period)
                .values(spent=spent, updated_at=now)
            )
            if changed.rowcount == 0:
                db.execute(
                    insert(schema.grant_usage).values(grant_id=grant_id, period=period, spent=spent, updated_at=now)
                )

    try:
        await store.runner.run(operation)
    except IntegrityError:  # another process inserted the row first: write over it
        await store.runner.run(operation)


async def month_usage(store: DomainStore, period: str) -> list[tuple[str, str | None, str, str, Micros]]:
    """``(user id, email, app id, app name, spent)`` per user and app in ``period``, summed exactly."""
    _GU, _A = schema.grant_usage.c, schema.apps.c

    def operation(db: Connection) -> list[tuple[str, str | None, str, str, Micros]]:
        query = (
            select(_G.user_id, _U.email, _G.app_id, _A.name, _GU.spent)
            .select_from(schema.grant_usage)
            .join(schema.grants, _G.id == _GU.grant_id)
            .join(schema.apps, _A.id == _G.app_id)
            .outerjoin(schema.users, _U.id == _G.user_id)
            .where(_GU.period == period)
        )
        sums: dict[tuple[str, str | None, str, str], int] = {}
        for row in db.execute(query).all():
            key = (row.user_id, row.email, row.app_id, row.name)
            sums[key] = sums.get(key, 0) + int(row.spent)
        return [
            (*key, spent)
            for key, spent in sorted(sums.items(), key=lambda item: (item[0][1] or item[0][0], item[0][2]))
        ]

    return await store.runner.run(operation)
