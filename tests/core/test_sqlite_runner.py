"""SQLite transactions run on the loop, and wait off the loop while another process holds the file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from wattfare_embed.store import NewConnection, Reservation, ReservationRequest, SqlStore


async def test_a_write_lock_held_elsewhere_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    try:
        now = int(time.time())
        await store.save_connection(NewConnection("app", "u", "dev", 1_000_000, "v1.x"), now)
        other_process = sqlite3.connect(path, isolation_level=None)
        other_process.execute("BEGIN IMMEDIATE")  # another process is writing
        reserving = asyncio.ensure_future(store.reserve(ReservationRequest("app", "u", 1000, 1, "chat", "m"), now))
        ticks = 0
        for _ in range(10):  # the loop stays free while the reservation waits for the lock
            await asyncio.sleep(0.02)
            ticks += 1
        assert not reserving.done() and ticks == 10
        other_process.execute("COMMIT")
        held = await asyncio.wait_for(reserving, timeout=5)
        assert isinstance(held, Reservation) and held.amount == 1000
        other_process.close()
    finally:
        await store.close()


async def test_an_in_memory_database_keeps_its_state_across_transactions() -> None:
    store = SqlStore("sqlite://")
    await store.open()
    try:
        now = int(time.time())
        await store.save_connection(NewConnection("app", "u", "dev", 1_000_000, "v1.x"), now)
        held = await store.reserve(ReservationRequest("app", "u", 1000, 1, "chat", "m"), now)
        assert isinstance(held, Reservation)
        assert await store.settle(held.ledger_id, 400, "reported", now)
        record = await store.get_connection("app", "u", now)
        assert record is not None and (record.spent, record.reserved) == (400, 0)
    finally:
        await store.close()


async def test_the_wal_is_checkpointed_into_the_database_file_while_requests_commit(tmp_path: Path) -> None:
    # Checkpoints run on a thread of their own, not inside a commit on the loop: the settled
    # ledger reaches the database file itself (read below without its WAL) within a second.
    path = tmp_path / "busy.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    try:
        now = int(time.time())
        await store.save_connection(NewConnection("app", "u", "dev", 10**12, "v1.x"), now)
        for _ in range(50):
            held = await store.reserve(ReservationRequest("app", "u", 1000, 1, "chat", "m"), now)
            assert isinstance(held, Reservation)
            assert await store.settle(held.ledger_id, 400, "reported", now)
        deadline = time.monotonic() + 5
        in_file = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            file_only = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            try:
                (in_file,) = file_only.execute(
                    "SELECT count(*) FROM wattfare_ledger WHERE state = 'settled'"
                ).fetchone()
            except sqlite3.OperationalError:
                in_file = 0  # not even the tables are in the file yet: all of it is still in the WAL
            finally:
                file_only.close()
            if in_file == 50:
                break
        assert in_file == 50
    finally:
        await store.close()
