"""Every store operation, timed, with the plan the database chose for each statement it sent.

The statements are captured as they go out (SQLAlchemy's cursor events, asyncpg's pool calls),
so whatever the store runs today is what gets explained, without a copy of its SQL here.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from wattfare_embed.store import ConsentRequest, GrantChange, NewConnection, ReservationRequest, SqlStore

from .load import MODEL

__all__ = ["OperationCost", "Statement", "explain", "time_operations"]

BIG_TABLES = ("wattfare_ledger", "wattfare_connections")
_SORT = re.compile(r"(->\s+)?(Incremental )?Sort\b")
_ROWS = re.compile(r"rows=(\d+)")


@dataclass
class Statement:
    operation: str
    sql: str
    parameters: Any


@dataclass
class OperationCost:
    name: str
    seconds: list[float] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


class _Capture:
    def __init__(self) -> None:
        self.operation = ""
        self.statements: list[Statement] = []

    def record(self, sql: str, parameters: Any) -> None:
        if self.operation and sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            self.statements.append(Statement(self.operation, sql, parameters))


@contextmanager
def _capturing() -> Iterator[_Capture]:
    capture = _Capture()

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        capture.record(statement, parameters)

    event.listen(Engine, "before_cursor_execute", before)
    patched: list[tuple[Any, str, Any]] = []
    try:
        from asyncpg.pool import Pool
    except ImportError:
        Pool = None
    if Pool is not None:
        for name in ("fetchrow", "fetchval", "fetch", "execute"):
            original = getattr(Pool, name)

            def wrapper(self: Any, sql: str, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
                capture.record(sql, args)
                return __original(self, sql, *args, **kwargs)

            setattr(Pool, name, wrapper)
            patched.append((Pool, name, original))
    try:
        yield capture
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        for owner, name, original in patched:
            setattr(owner, name, original)


Operation = Callable[[], Awaitable[object]]


async def time_operations(
    database_url: str, app_id: str, *, heavy_user: str, other_user: str, repeats: int
) -> list[OperationCost]:
    """Run each store operation ``repeats`` times; the statements of its first run are kept."""
    store = SqlStore(database_url)
    await store.open()
    now = int(time.time())
    held: list[str] = []

    async def reserve() -> object:
        request = ReservationRequest(app_id, heavy_user, wanted=2000, minimum=10, kind="chat", model=MODEL)
        result = await store.reserve(request, now)
        held.append(getattr(result, "ledger_id", ""))
        return result

    async def settle() -> object:
        return await store.settle(held.pop(), 1500, "reported", now)

    def consent_request(state: str) -> ConsentRequest:
        return ConsentRequest(
            state, app_id, heavy_user, "dev", "v" * 43, 5_000_000, "/", "popup", "http://x/cb", "h" * 64, now, now + 600
        )

    async def consent_cycle() -> object:
        state = secrets.token_urlsafe(24)
        await store.create_consent_request(consent_request(state))
        await store.find_consent_request(state)
        return await store.consume_consent_request(state, "h" * 64, now)

    async def webhook_event() -> object:
        event_id = "evt_" + secrets.token_hex(8)
        change = GrantChange(app_id, event_id, f"grant-{other_user}", False, 900_000_000, max_cap=10**12)
        return await store.apply_grant_change(change, now)

    async def reconnect() -> object:
        sealed = "sealed-" + secrets.token_hex(8)
        return await store.save_connection(NewConnection(app_id, other_user, "dev", 900_000_000, sealed), now)

    operations: list[tuple[str, Operation]] = [
        ("reserve (hot path)", reserve),
        ("settle (hot path)", settle),
        ("get_connection (status, revocation poll)", lambda: store.get_connection(app_id, heavy_user, now)),
        ("find_connection_by_grant (webhooks)", lambda: store.find_connection_by_grant(f"grant-{other_user}", now)),
        ("save_connection (a reconnect)", reconnect),
        ("set_cap", lambda: store.set_cap(app_id, other_user, 900_000_000, now)),
        ("ledger: one user, 100 newest", lambda: store.ledger(app_id, heavy_user, 100)),
        ("ledger: whole app, 100 newest", lambda: store.ledger(app_id, None, 100)),
        ("pending_reconciliations (sweeper)", lambda: store.pending_reconciliations(100)),
        ("sweep_expired (sweeper)", lambda: store.sweep_expired(now)),
        ("forget_ended_grant_credentials (sweeper)", lambda: store.forget_ended_grant_credentials(app_id, now, now)),
        ("consent request: create, find, consume", consent_cycle),
        ("webhook event: record and apply", webhook_event),
    ]
    costs = [OperationCost(name) for name, _ in operations]
    try:
        with _capturing() as capture:
            for repeat in range(repeats):
                for cost, (name, operation) in zip(costs, operations, strict=True):
                    capture.operation = name if repeat == 0 else ""
                    started = time.perf_counter()
                    await operation()
                    cost.seconds.append(time.perf_counter() - started)
        for cost in costs:
            cost.statements = [statement for statement in capture.statements if statement.operation == cost.name]
    finally:
        await store.close()
    return costs


def _flag_sqlite(detail: str) -> bool:
    # "SEARCH … USING INDEX" finds rows; "SCAN" reads a whole table or index; a temp B-tree sorts.
    return detail.startswith("SCAN") or "TEMP B-TREE" in detail


async def explain(database_url: str, statement: Statement) -> tuple[list[str], bool]:
    """The plan lines, and whether any reads a whole big table or sorts (a cost that grows with rows)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(url.database or "") as db:
            rows = db.execute("EXPLAIN QUERY PLAN " + statement.sql, statement.parameters or ()).fetchall()
        lines = [str(row[-1]) for row in rows]
        flagged = any(_flag_sqlite(line) and any(table in line for table in BIG_TABLES) for line in lines)
        flagged = flagged or any("TEMP B-TREE" in line for line in lines)
        return lines, flagged
    import asyncpg

    connection = await asyncpg.connect(
        user=url.username, password=url.password, host=url.host, port=url.port or 5432, database=url.database
    )
    try:
        parameters = statement.parameters
        if isinstance(parameters, dict):
            return ["(named parameters: not explained)"], False
        rows = await connection.fetch("EXPLAIN " + statement.sql, *(parameters or ()))
    finally:
        await connection.close()
    lines = [row[0] for row in rows]

    def grows(line: str) -> bool:
        if "Seq Scan" in line:
            return any(table in line for table in BIG_TABLES)
        # A sort of a handful of rows (the few matching an index) costs nothing; of many, it grows.
        estimate = _ROWS.search(line)
        return bool(_SORT.match(line.strip())) and estimate is not None and int(estimate.group(1)) > 1000

    flagged = any(grows(line) for line in lines)
    return lines, flagged
