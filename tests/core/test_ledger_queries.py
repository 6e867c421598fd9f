"""The ledger's queries read an index in order and stop at their limit: none sorts or scans the table."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from wattfare_embed import SqlStore
from wattfare_embed.store import NewConnection, Reservation, ReservationRequest, new_ledger_id


@pytest.fixture
def statements() -> Iterator[list[tuple[str, Any]]]:
    """Every statement SQLAlchemy sends to a database while the test runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_ledger_pages_and_open_reconciliations_are_read_in_index_order(
    tmp_path: Path, statements: list[tuple[str, Any]]
) -> None:
    path = tmp_path / "ledger.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    try:
        await store.save_connection(NewConnection("app", "u", "dev", 1_000_000, "v1.x"), int(time.time()))
        statements.clear()
        await store.ledger("app")
        await store.ledger("app", "u")
        await store.pending_reconciliations(100)
        await store.pending_reconciliations(100, app_id="app")
        await store.sweep_expired(int(time.time()))
        await store.receipts("app", "u", "2026-12", before=None, limit=100)
        await store.receipts("app", "u", "2026-12", before=(int(time.time()), "req_x"), limit=100)
        await store.month_totals("app", "2026-12")
    finally:
        await store.close()
    queries = [(sql, parameters) for sql, parameters in statements if "FROM wattfare_ledger" in sql]
    assert len(queries) == 8
    database = sqlite3.connect(path)
    try:
        plans = []
        for sql, parameters in queries:
            plan = " / ".join(row[3] for row in database.execute("EXPLAIN QUERY PLAN " + sql, parameters))
            assert "USING INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort of every matching row before the limit
            assert not plan.startswith("SCAN"), plan
            plans.append(plan)
    finally:
        database.close()
    # The indexes holding only a subset of the rows (open holds, reconciliations, charged rows)
    # are the ones their queries read.
    for plan, index in zip(
        plans[2:],
        ["reconcile", "reconcile", "open", "receipts", "receipts", "month"],
        strict=True,
    ):
        assert f"USING INDEX wattfare_ledger_{index} " in plan, plan


async def test_rows_made_in_the_same_second_are_listed_newest_first_in_the_order_they_were_made(
    tmp_path: Path,
) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    await store.open()
    try:
        now = int(time.time())
        await store.save_connection(NewConnection("app", "u", "dev", 1_000_000, "v1.x"), now)
        made = []
        for _ in range(20):  # one second's worth of requests, all stamped with the same created_at
            reservation = await store.reserve(ReservationRequest("app", "u", 100, 1, "chat", "m"), now)
            assert isinstance(reservation, Reservation)
            made.append(reservation.ledger_id)
        listed = [entry.id for entry in await store.ledger("app", "u")]
    finally:
        await store.close()
    assert listed == list(reversed(made))


def test_ledger_ids_made_in_one_microsecond_or_after_the_clock_stepped_back_still_sort_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_796_000_000_000_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: clock[0])
    made = [new_ledger_id() for _ in range(50)]  # a burst within one microsecond
    clock[0] -= 3_000_000_000  # the clock steps back three seconds
    made += [new_ledger_id() for _ in range(5)]

    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", ledger_id) for ledger_id in made)  # the receipts cursor's form


@pytest.mark.skipif(not hasattr(os, "fork"), reason="processes forked from one another")
def test_a_forked_process_makes_ledger_ids_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_796_000_000_000_000_000)  # both in one microsecond
    new_ledger_id()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits at once
        os.write(write, new_ledger_id().encode())
        os._exit(0)
    os.close(write)
    try:
        theirs = os.read(read, 100).decode()
    finally:
        os.close(read)
        os.waitpid(child, 0)
    ours = new_ledger_id()
    # The same microsecond and, without a fresh seed, the same next random digits: one id twice.
    assert theirs[4:17] == ours[4:17] and theirs != ours
