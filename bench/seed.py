"""Many users and a large ledger, written straight into the database (the proxy would take hours).

Rows look like the store's own: connections with a sealed credential each, ledger entries
settled in the current month, spread over the users, a tenth of them for one user so that a
per-user query has a long history to cope with.
"""

from __future__ import annotations

import os
import secrets
import time

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from wattfare_embed import AppKeys
from wattfare_embed.crypto import CredentialBox
from wattfare_embed.periods import period_of
from wattfare_embed.store.schema import connections, ledger

from .servers import BENCH_CAP, UPSTREAM_KEY

__all__ = ["seed_ledger", "seed_users", "user_name"]


def user_name(index: int) -> str:
    return f"scale-user-{index:06d}"


async def seed_users(database_url: str, keys: AppKeys, first: int, count: int) -> None:
    """Connect users ``first`` … ``first + count - 1`` (see ``user_name``), each with its own credential."""
    box = CredentialBox(keys.secret_key)
    now = int(time.time())
    rows = []
    for index in range(first, first + count):
        user = user_name(index)
        rows.append(
            {
                "id": "con_" + secrets.token_hex(12),
                "app_id": keys.app_id,
                "app_user_id": user,
                "status": "active",
                "authority": "dev",
                "monthly_cap": BENCH_CAP,
                "period": period_of(now),
                "spent": 0,
                "reserved": 0,
                "credential": box.seal(UPSTREAM_KEY, f"{keys.app_id}/{user}"),
                "grant_id": f"grant-{user}",
                "upstream_url": None,
                "hard_limit": None,
                "created_at": now,
                "updated_at": now,
            }
        )
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as db:
            for start in range(0, len(rows), 2000):
                await db.execute(insert(connections), rows[start : start + 2000])
    finally:
        await engine.dispose()


_COLUMNS = (
    "id, connection_id, app_id, app_user_id, kind, model, state, reserved, cost, cost_source, "
    "generation_id, reconcile, period, created_at, expires_at, settled_at"
)


def _row_expression(dialect: str, users: int, heavy_user: str) -> str:
    """One ledger row from the counter ``i``: the tenth rows to ``heavy_user``, the rest over ``users``."""
    concat = "||"
    pad = (
        f"substr('000000' {concat} (i % {users}), -6, 6)"
        if dialect == "sqlite"
        else f"lpad((i % {users})::text, 6, '0')"
    )
    user = f"CASE WHEN i % 10 = 0 THEN '{heavy_user}' ELSE 'scale-user-' {concat} {pad} END"
    as_text = "CAST(i AS TEXT)" if dialect == "sqlite" else "i::text"
    false = "0" if dialect == "sqlite" else "false"
    return (
        f"'seed_' {concat} {as_text}, 'con_seeded', :app_id, {user}, 'chat', 'openai/gpt-4o-mini', 'settled', "
        f"100, 64, 'reported', 'gen-seed-' {concat} {as_text}, {false}, :period, :now - :count + i, "
        f":now - :count + i + 3600, :now - :count + i"
    )


async def seed_ledger(database_url: str, app_id: str, *, count: int, users: int, heavy_user: str) -> float:
    """Insert ``count`` settled ledger rows in one statement; returns the seconds it took."""
    engine = create_async_engine(database_url)
    dialect = engine.dialect.name
    rows = _row_expression(dialect, users, heavy_user)
    if dialect == "sqlite":
        statement = (
            f"INSERT INTO {ledger.name} ({_COLUMNS}) WITH RECURSIVE counter(i) AS "
            f"(SELECT 1 UNION ALL SELECT i + 1 FROM counter WHERE i < :count) SELECT {rows} FROM counter"
        )
    else:
        statement = f"INSERT INTO {ledger.name} ({_COLUMNS}) SELECT {rows} FROM generate_series(1, :count) AS i"
    now = int(time.time())
    started = time.perf_counter()
    try:
        async with engine.begin() as db:
            await db.execute(text(statement), {"app_id": app_id, "period": period_of(now), "now": now, "count": count})
        async with engine.connect() as db:
            # Outside a transaction: PostgreSQL's VACUUM refuses to run inside one.
            db = await db.execution_options(isolation_level="AUTOCOMMIT")
            # Fresh statistics and, on PostgreSQL, the vacuum autovacuum would have run on the new
            # rows after a real month (its insert threshold starts one right after a bulk load,
            # which otherwise reads and rewrites the whole table while the next figures are taken).
            await db.execute(text("ANALYZE" if dialect == "sqlite" else f"VACUUM (ANALYZE) {ledger.name}"))
            # And the bulk write flushed, so what is timed next is the steady state, not its aftermath.
            await db.execute(text("PRAGMA wal_checkpoint(TRUNCATE)" if dialect == "sqlite" else "CHECKPOINT"))
    finally:
        await engine.dispose()
    os.sync()  # the kernel's write-back of the load, too, before anything is timed
    return time.perf_counter() - started
